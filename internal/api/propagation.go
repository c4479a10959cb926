package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/claims"
	"github.com/openedx-keyd/keyd/internal/rotation"
)

// Propagation is what the observed-propagation routes need from the
// rotation manager.
type Propagation interface {
	Propagation(ctx context.Context) (rotation.PropagationStatus, error)
	Confirm(ctx context.Context, req rotation.ConfirmRequest) error
}

// PendingInfo is the pending key in GET /v1/propagation.
type PendingInfo struct {
	KID         string `json:"kid"`
	Version     int    `json:"version"`
	ActivatesAt string `json:"activates_at"`
	Confirmed   bool   `json:"confirmed"`
	// Extensions: whether the key waits for its clients, and the latest
	// time it activates (activates_at + max wait).
	Gated    bool    `json:"gated"`
	Deadline *string `json:"activation_deadline"`
}

// InstanceInfo is one instance of an expected client.
type InstanceInfo struct {
	Instance   string `json:"instance"`
	LastFetch  string `json:"last_fetch"`
	MaxVersion int    `json:"max_version"`
}

// ClientInfo is one expected client in GET /v1/propagation.
type ClientInfo struct {
	Client      string         `json:"client"`
	Confirmed   bool           `json:"confirmed"`
	ConfirmedBy *string        `json:"confirmed_by"`
	Instances   []InstanceInfo `json:"instances"`
	// Extensions: instances that fetched within the window, and of those
	// the ones served the pending key.
	Live    int `json:"instances_live"`
	Holding int `json:"instances_holding"`
}

// PropagationInfo is the answer of GET /v1/propagation and of a confirmation.
type PropagationInfo struct {
	Pending *PendingInfo `json:"pending"`
	Clients []ClientInfo `json:"clients"`
}

func describePropagation(st rotation.PropagationStatus) PropagationInfo {
	out := PropagationInfo{Clients: []ClientInfo{}}
	g := st.Gate
	if p := st.Pending; p != nil {
		out.Pending = &PendingInfo{KID: p.KID, Version: p.Version, ActivatesAt: rfc3339(p.ActivatesAt), Confirmed: g.Confirmed, Gated: p.Gated()}
		if p.Gated() {
			d := rfc3339(g.Deadline)
			out.Pending.Deadline = &d
		}
	}
	for _, c := range g.Clients {
		ci := ClientInfo{Client: c.Client, Instances: []InstanceInfo{}, Live: c.Live, Holding: c.Holding}
		if st.Pending != nil && c.Confirmed {
			by := c.By
			ci.Confirmed, ci.ConfirmedBy = true, &by
		}
		for _, o := range c.Instances {
			ci.Instances = append(ci.Instances, InstanceInfo{Instance: o.Instance, LastFetch: rfc3339(o.LastFetch), MaxVersion: o.MaxVersion})
		}
		out.Clients = append(out.Clients, ci)
	}
	return out
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (s *Server) propagation(c echo.Context) error {
	if _, err := s.authorize(c, auth.RoutePropagation); err != nil {
		return err
	}
	return s.answerPropagation(c)
}

func (s *Server) answerPropagation(c echo.Context) error {
	if s.cfg.Propagation == nil {
		return errNoPropagation
	}
	st, err := s.cfg.Propagation.Propagation(c.Request().Context())
	if err != nil {
		return s.propagationError(err)
	}
	return c.JSON(http.StatusOK, describePropagation(st))
}

var (
	errNoPropagation     = apiError(http.StatusServiceUnavailable, "propagation_unavailable", "Observed propagation is not configured on this replica.")
	errUnknownClient     = apiError(http.StatusUnprocessableEntity, "unknown_client", "The client is not in --expected-clients; only an expected client can be confirmed.")
	errPropagationFailed = apiError(http.StatusServiceUnavailable, "propagation_unavailable", "The observed-propagation store could not be read or written; the cause is logged. Retry the request.")
	errUnknownVer        = apiError(http.StatusUnprocessableEntity, "unknown_version", "No published key has that version; see GET /v1/keys.")
)

// propagationError maps a propagation route's error; one the store or the
// lifecycle gave (a read or write that failed) is a 503, its cause logged.
func (s *Server) propagationError(err error) error {
	switch {
	case errors.Is(err, rotation.ErrUnknownClient):
		return errUnknownClient
	case errors.Is(err, rotation.ErrUnknownVersion):
		return errUnknownVer
	case errors.Is(err, rotation.ErrNoPropagation):
		return errNoPropagation
	}
	s.log.Error("observed propagation request failed", "err", err)
	return errPropagationFailed
}

// confirmMembers are the members of a confirm body.
var confirmMembers = []string{"client", "version"}

// decodeConfirm decodes a confirm body as strictly as every body; both
// members are required.
func decodeConfirm(body []byte) (req rotation.ConfirmRequest, err error) {
	b, err := claims.DecodeBody(body, confirmMembers...)
	if err == nil {
		req.Client, err = b.String("client")
	}
	if err == nil {
		req.Version, err = b.PositiveInt("version")
	}
	if err == nil && (strings.TrimSpace(req.Client) == "" || req.Version == 0) {
		err = apiError(http.StatusBadRequest, "invalid_request", `The body needs "client" (a client name) and "version" (a key version).`)
	}
	return req, err
}

func (s *Server) confirm(c echo.Context) error {
	p, req, err := adminRequest(s, c, auth.RouteConfirm, decodeConfirm)
	if err != nil {
		return err
	}
	if s.cfg.Propagation == nil {
		return errNoPropagation
	}
	req.Actor = p.Actor
	if err := s.cfg.Propagation.Confirm(c.Request().Context(), req); err != nil {
		return s.propagationError(err)
	}
	return s.answerPropagation(c)
}

// WaitInfo is an expected client a pending key waits for (waiting_for in
// GET /v1/keys).
type WaitInfo struct {
	Client  string `json:"client"`
	Holding int    `json:"instances_holding"`
	Live    int    `json:"instances_live"`
}

// waitingFor lists the clients the gate g still waits for.
func waitingFor(g *rotation.GateStatus) []WaitInfo {
	var out []WaitInfo
	for _, c := range g.Clients {
		if !c.Confirmed {
			out = append(out, WaitInfo{Client: c.Client, Holding: c.Holding, Live: c.Live})
		}
	}
	return out
}

// adminRequest checks the role of route (admin), reads the body (413, 415) and decodes
// it strictly with decode.
func adminRequest[T any](s *Server, c echo.Context, route auth.Route, decode func([]byte) (T, error)) (auth.Principal, T, error) {
	var req T
	p, err := s.authorize(c, route)
	if err != nil {
		return p, req, err
	}
	body, err := readBody(c)
	if err != nil {
		return p, req, err
	}
	req, err = decode(body)
	return p, req, err
}
