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

type pendingInfo struct {
	KID         string `json:"kid"`
	Version     int    `json:"version"`
	ActivatesAt string `json:"activates_at"`
	Confirmed   bool   `json:"confirmed"`
	// Extensions: whether the key waits for its clients, and the latest
	// time it activates (activates_at + max wait).
	Gated    bool    `json:"gated"`
	Deadline *string `json:"activation_deadline"`
}

type instanceInfo struct {
	Instance   string `json:"instance"`
	LastFetch  string `json:"last_fetch"`
	MaxVersion int    `json:"max_version"`
}

type clientInfo struct {
	Client      string         `json:"client"`
	Confirmed   bool           `json:"confirmed"`
	ConfirmedBy *string        `json:"confirmed_by"`
	Instances   []instanceInfo `json:"instances"`
	// Extensions: instances that fetched within the window, and of those
	// the ones served the pending key.
	Live    int `json:"instances_live"`
	Holding int `json:"instances_holding"`
}

type propagationInfo struct {
	Pending *pendingInfo `json:"pending"`
	Clients []clientInfo `json:"clients"`
}

func describePropagation(st rotation.PropagationStatus) propagationInfo {
	out := propagationInfo{Clients: []clientInfo{}}
	g := st.Gate
	if p := st.Pending; p != nil {
		out.Pending = &pendingInfo{KID: p.KID, Version: p.Version, ActivatesAt: rfc3339(p.ActivatesAt), Confirmed: g.Confirmed, Gated: p.Gated()}
		if p.Gated() {
			d := rfc3339(g.Deadline)
			out.Pending.Deadline = &d
		}
	}
	for _, c := range g.Clients {
		ci := clientInfo{Client: c.Client, Instances: []instanceInfo{}, Live: c.Live, Holding: c.Holding}
		if st.Pending != nil && c.Confirmed {
			by := c.By
			ci.Confirmed, ci.ConfirmedBy = true, &by
		}
		for _, o := range c.Instances {
			ci.Instances = append(ci.Instances, instanceInfo{Instance: o.Instance, LastFetch: rfc3339(o.LastFetch), MaxVersion: o.MaxVersion})
		}
		out.Clients = append(out.Clients, ci)
	}
	return out
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (s *Server) propagation(c echo.Context) error {
	if _, err := s.authorize(c, auth.RoleAuditor, auth.RoleAdmin); err != nil {
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
		return propagationError(err)
	}
	return c.JSON(http.StatusOK, describePropagation(st))
}

var (
	errNoPropagation = apiError(http.StatusServiceUnavailable, "propagation_unavailable", "Observed propagation is not configured on this replica.")
	errUnknownClient = apiError(http.StatusUnprocessableEntity, "unknown_client", "The client is not in --expected-clients; only an expected client can be confirmed.")
	errUnknownVer    = apiError(http.StatusUnprocessableEntity, "unknown_version", "No published key has that version; see GET /v1/keys.")
)

func propagationError(err error) error {
	switch {
	case errors.Is(err, rotation.ErrUnknownClient):
		return errUnknownClient
	case errors.Is(err, rotation.ErrUnknownVersion):
		return errUnknownVer
	case errors.Is(err, rotation.ErrNoPropagation):
		return errNoPropagation
	}
	return err
}

// confirmMembers are the members of a confirm body.
var confirmMembers = []string{"client", "version"}

func decodeConfirm(body []byte) (rotation.ConfirmRequest, error) {
	var req rotation.ConfirmRequest
	b, err := claims.DecodeBody(body, confirmMembers...)
	if err != nil {
		return req, err
	}
	if req.Client, err = b.String("client"); err != nil {
		return req, err
	}
	if req.Version, err = b.PositiveInt("version"); err != nil {
		return req, err
	}
	if strings.TrimSpace(req.Client) == "" || req.Version == 0 {
		return req, apiError(http.StatusBadRequest, "invalid_request", `The body needs "client" (a client name) and "version" (a key version).`)
	}
	return req, nil
}

func (s *Server) confirm(c echo.Context) error {
	p, err := s.authorize(c, auth.RoleAdmin)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	req, err := decodeConfirm(body)
	if err != nil {
		return err
	}
	if s.cfg.Propagation == nil {
		return errNoPropagation
	}
	req.Actor = p.Actor
	if err := s.cfg.Propagation.Confirm(c.Request().Context(), req); err != nil {
		return propagationError(err)
	}
	return s.answerPropagation(c)
}

// waitInfo is an expected client a pending key waits for (GET /v1/keys).
type waitInfo struct {
	Client  string `json:"client"`
	Holding int    `json:"instances_holding"`
	Live    int    `json:"instances_live"`
}

// waitingFor lists the clients the gate g still waits for.
func waitingFor(g *rotation.GateStatus) []waitInfo {
	var out []waitInfo
	for _, c := range g.Clients {
		if !c.Confirmed {
			out = append(out, waitInfo{Client: c.Client, Holding: c.Holding, Live: c.Live})
		}
	}
	return out
}
