package report

import (
	"fmt"
	"time"

	"github.com/openedx-keyd/keyd/internal/audit"
)

// The timeline is drawn in a viewBox 1000 units wide, scaled to the page
// width (width 100%), so it cannot overflow the page at any size.
const (
	viewW     = 1000.0
	plotX0    = 150.0 // left of the plot; lane labels to its left
	plotX1    = 985.0
	laneH     = 14.0
	laneStep  = 22.0
	chartTop  = 8.0
	axisH     = 30.0
	minSegW   = 1.5
	lanesEach = 40 // lanes per chart: more versions are paginated
)

// Chart is one timeline figure: a lane per key version (or, in the
// overview, per page of versions) over a UTC time axis.
type Chart struct {
	ID       string // unique in the document (SVG pattern ids)
	Title    string
	Caption  string
	Height   float64
	AxisY    float64
	Lanes    []Lane
	Ticks    []Tick
	Now      *Mark // the report's end, when it is inside the axis
	Overview bool
}

// Lane is one row of a chart.
type Lane struct {
	Version   int    // 0 in the overview
	Label     string // "v12"
	Sub       string // a short kid, or the page's range
	Title     string // the tooltip: everything about the key
	Y         float64
	BarY      float64
	Segs      []Seg
	Marks     []Mark
	Note      string // text in the plot when there is nothing to draw
	Untrusted bool
	Stripe    bool // every other lane is shaded, to follow a row
}

// Seg is a drawn stretch of one state.
type Seg struct {
	X, W  float64
	State string // a segment state: pending, gated_wait, active, retiring
	Open  bool
	Title string
	Y, H  float64 // within the lane (the overview draws thinner bands)
}

// Mark is a point event: emergency creation, destruction, a key gone
// without its event, an activation without confirmation.
type Mark struct {
	X     float64
	Kind  string // emergency, destroyed, cut, gone, unconfirmed, now
	Title string
	Label string // written left of the mark (the emergency's actor)
}

// Tick is one label of the time axis.
type Tick struct {
	X      float64
	Label  string
	Anchor string // text-anchor: the last label ends at the plot's edge
}

// axis maps times to x.
type axis struct{ from, to time.Time }

func (a axis) x(t time.Time) float64 {
	span := a.to.Sub(a.from)
	if span <= 0 {
		return plotX0
	}
	f := float64(t.Sub(a.from)) / float64(span)
	f = max(0, min(1, f))
	return plotX0 + f*(plotX1-plotX0)
}

// charts draws the report's keys: one chart when they fit, else an
// overview (a lane per page of versions) and a chart per page, each with
// its own axis so that every lane stays readable with hundreds of versions.
func charts(r audit.Report) []Chart {
	keys := r.Keys
	if len(keys) == 0 {
		return nil
	}
	period := axis{r.Period.Since, r.Period.Until}
	if len(keys) <= lanesEach {
		c := keyChart("timeline-1", "Key lifecycle", keys, period, r)
		return []Chart{c}
	}
	var pages [][]audit.KeyFacts
	for i := 0; i < len(keys); i += lanesEach {
		pages = append(pages, keys[i:min(i+lanesEach, len(keys))])
	}
	out := []Chart{overview(pages, period, r)}
	for i, p := range pages {
		title := fmt.Sprintf("Key versions %d–%d (page %d of %d)", p[0].Version, p[len(p)-1].Version, i+1, len(pages))
		out = append(out, keyChart(fmt.Sprintf("timeline-%d", i+2), title, p, pageAxis(p, period), r))
	}
	return out
}

// pageAxis spans a page's keys within the period.
func pageAxis(keys []audit.KeyFacts, period axis) axis {
	var a axis
	for _, k := range keys {
		for _, s := range k.Segments {
			if a.from.IsZero() || s.From.Before(a.from) {
				a.from = s.From
			}
			if s.To.After(a.to) {
				a.to = s.To
			}
		}
		if k.Destroyed != nil && k.Destroyed.After(a.to) {
			a.to = *k.Destroyed
		}
	}
	if a.from.IsZero() || a.from.Before(period.from) {
		a.from = period.from
	}
	if a.to.IsZero() || a.to.After(period.to) {
		a.to = period.to
	}
	if pad := a.to.Sub(a.from) / 50; pad > 0 {
		a.from, a.to = maxT(a.from.Add(-pad), period.from), minT(a.to.Add(pad), period.to)
	}
	return a
}

func keyChart(id, title string, keys []audit.KeyFacts, a axis, r audit.Report) Chart {
	c := Chart{ID: id, Title: title, Caption: spanCaption(a)}
	for i, k := range keys {
		y := chartTop + float64(i)*laneStep
		l := Lane{
			Version: k.Version, Label: fmt.Sprintf("v%d", k.Version), Sub: shortKID(k.KID),
			Title: keyTitle(k), Y: y, BarY: y + (laneStep-laneH)/2, Untrusted: k.Untrusted, Stripe: i%2 == 1,
		}
		for _, s := range k.Segments {
			l.Segs = append(l.Segs, seg(a, s, 0, laneH))
		}
		l.Marks = keyMarks(a, k)
		if len(k.Segments) == 0 {
			l.Note = "held by the backend, but the audit chain has no event for it"
			if k.Held != "yes" {
				l.Note = "events for this version, but no creation event"
			}
		}
		c.Lanes = append(c.Lanes, l)
	}
	finish(&c, a, r)
	return c
}

// overview is one lane per page of versions: where each page's keys were
// active (full height), pending or retiring (thin bands), and its
// emergencies.
func overview(pages [][]audit.KeyFacts, a axis, r audit.Report) Chart {
	c := Chart{ID: "timeline-overview", Title: fmt.Sprintf("Overview: %d key versions in pages of %d", len(r.Keys), lanesEach),
		Caption: spanCaption(a), Overview: true}
	for i, p := range pages {
		y := chartTop + float64(i)*laneStep
		l := Lane{Label: fmt.Sprintf("p%d", i+1), Sub: fmt.Sprintf("v%d–v%d", p[0].Version, p[len(p)-1].Version),
			Title: fmt.Sprintf("page %d: key versions %d to %d", i+1, p[0].Version, p[len(p)-1].Version),
			Y:     y, BarY: y + (laneStep-laneH)/2, Stripe: i%2 == 1}
		for _, k := range p {
			l.Untrusted = l.Untrusted || k.Untrusted
			for _, s := range k.Segments {
				if s.State == audit.SegActive {
					l.Segs = append(l.Segs, seg(a, s, 0, laneH))
				} else {
					l.Segs = append(l.Segs, seg(a, s, laneH*0.35, laneH*0.3))
				}
			}
			if k.Emergency && k.Created != nil {
				l.Marks = append(l.Marks, Mark{X: a.x(*k.Created), Kind: "emergency", Title: fmt.Sprintf("v%d emergency rotation at %s by %s", k.Version, stamp(k.Created), k.Actor)})
			}
		}
		c.Lanes = append(c.Lanes, l)
	}
	finish(&c, a, r)
	return c
}

func finish(c *Chart, a axis, r audit.Report) {
	c.AxisY = chartTop + float64(len(c.Lanes))*laneStep + 4
	c.Height = c.AxisY + axisH
	c.Ticks = ticks(a)
	if end := r.GeneratedAt; !end.Before(a.from) && !end.After(a.to) {
		c.Now = &Mark{X: a.x(end), Kind: "now", Title: "report made " + end.Format(time.RFC3339)}
	}
}

func seg(a axis, s audit.Segment, dy, h float64) Seg {
	x0, x1 := a.x(s.From), a.x(s.To)
	w := max(x1-x0, minSegW)
	if x0+w > plotX1 {
		x0 = plotX1 - w
	}
	title := fmt.Sprintf("%s from %s to %s", stateName(s.State), s.From.Format(time.RFC3339), s.To.Format(time.RFC3339))
	if s.Open {
		title = fmt.Sprintf("%s since %s (still at the end of the period)", stateName(s.State), s.From.Format(time.RFC3339))
	}
	return Seg{X: x0, W: w, State: s.State, Open: s.Open, Title: title, Y: dy, H: h}
}

func keyMarks(a axis, k audit.KeyFacts) []Mark {
	var m []Mark
	if k.Emergency && k.Created != nil {
		x := a.x(*k.Created)
		mk := Mark{X: x, Kind: "emergency", Title: fmt.Sprintf("emergency rotation by %s at %s: %s", k.Actor, stamp(k.Created), k.Reason)}
		if x-plotX0 > 140 {
			mk.Label = "EMERGENCY · " + shortText(k.Actor, 18)
		}
		m = append(m, mk)
	}
	if len(k.Unconfirmed) > 0 && k.Activated != nil {
		m = append(m, Mark{X: a.x(*k.Activated), Kind: "unconfirmed", Title: "activated at its max wait without confirmation from: " + join(k.Unconfirmed)})
	}
	switch {
	case k.Destroyed != nil && k.CutByEmergency:
		m = append(m, Mark{X: a.x(*k.Destroyed), Kind: "cut", Title: fmt.Sprintf("destroyed at once by the emergency rotation, by %s at %s", k.DestroyedBy, stamp(k.Destroyed))})
	case k.Destroyed != nil:
		m = append(m, Mark{X: a.x(*k.Destroyed), Kind: "destroyed", Title: fmt.Sprintf("destroyed by %s at %s", k.DestroyedBy, stamp(k.Destroyed))})
	case k.State == "gone" && len(k.Segments) > 0:
		last := k.Segments[len(k.Segments)-1].To
		m = append(m, Mark{X: a.x(last), Kind: "gone", Title: "no longer held by the backend, but no destroyed event"})
	}
	return m
}

// tickSteps are the axis steps tried, shortest first; months and years
// are calendar steps.
var tickSteps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour,
}

const maxTicks = 8

// ticks labels the axis with at most maxTicks round UTC instants.
func ticks(a axis) []Tick {
	span := a.to.Sub(a.from)
	if span <= 0 {
		return []Tick{{X: plotX0, Label: a.from.Format("2006-01-02 15:04:05")}}
	}
	for _, step := range tickSteps {
		if span/step <= maxTicks {
			return stepTicks(a, step)
		}
	}
	for _, months := range []int{1, 2, 3, 6, 12, 24, 60} {
		if int(span.Hours()/24/30)/months <= maxTicks {
			return monthTicks(a, months)
		}
	}
	return monthTicks(a, 120)
}

func stepTicks(a axis, step time.Duration) []Tick {
	var out []Tick
	layout := "Jan 2 15:04"
	switch {
	case step < time.Minute:
		layout = "15:04:05"
	case step >= 24*time.Hour:
		layout = "2006-01-02"
	}
	t := a.from.Truncate(step)
	if t.Before(a.from) {
		t = t.Add(step)
	}
	for ; !t.After(a.to); t = t.Add(step) {
		out = append(out, Tick{X: a.x(t), Label: t.Format(layout)})
	}
	return anchored(out)
}

func monthTicks(a axis, months int) []Tick {
	var out []Tick
	t := time.Date(a.from.Year(), a.from.Month(), 1, 0, 0, 0, 0, time.UTC)
	if t.Before(a.from) {
		t = t.AddDate(0, 1, 0)
	}
	for ; !t.After(a.to); t = t.AddDate(0, months, 0) {
		out = append(out, Tick{X: a.x(t), Label: t.Format("Jan 2006")})
	}
	return anchored(out)
}

// anchored centres each label on its tick, but ends one too close to the
// right edge there, so no label runs off the drawing.
func anchored(ts []Tick) []Tick {
	for i := range ts {
		ts[i].Anchor = "middle"
		if ts[i].X > plotX1-35 {
			ts[i].Anchor = "end"
		}
	}
	return ts
}

func spanCaption(a axis) string {
	return "UTC, " + a.from.Format("2006-01-02 15:04:05") + " to " + a.to.Format("2006-01-02 15:04:05")
}

// shortKID is a kid short enough for a lane label.
func shortKID(kid string) string {
	r := []rune(kid)
	if len(r) <= 12 {
		return kid
	}
	return string(r[:11]) + "…"
}

// shortText is s cut to n runes.
func shortText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func keyTitle(k audit.KeyFacts) string {
	s := fmt.Sprintf("key version %d, kid %s, %s by %s", k.Version, k.KID, k.Origin, k.Actor)
	if k.Reason != "" {
		s += " (" + k.Reason + ")"
	}
	s += "; created " + stamp(k.Created) + ", activated " + stamp(k.Activated) + ", retired " + stamp(k.Retired) + ", destroyed " + stamp(k.Destroyed)
	if k.Untrusted {
		s += "; UNTRUSTED: some of its events follow the chain's first bad record"
	}
	return s
}

func stateName(s string) string {
	switch s {
	case audit.SegPending:
		return "published, not yet signing"
	case audit.SegGatedWait:
		return "waiting for expected clients"
	case audit.SegActive:
		return "active (signing)"
	case audit.SegRetiring:
		return "retired (verify-only, still published)"
	}
	return s
}

func minT(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxT(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
