package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/claims"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// Error is an API error: what the client reads. The cause, if any, is logged.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func apiError(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// Errors the handlers share.
var (
	errNoCredential     = apiError(http.StatusUnauthorized, "unauthenticated", "A bearer token is required: send Authorization: Bearer <token>.")
	errBadCredential    = apiError(http.StatusUnauthorized, "unauthenticated", "The bearer token is unknown or expired.")
	errTooLarge         = apiError(http.StatusRequestEntityTooLarge, "body_too_large", "The request body is larger than 64 KiB.")
	errNotJSON          = apiError(http.StatusUnsupportedMediaType, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
	errNoActiveKey      = apiError(http.StatusServiceUnavailable, "no_active_key", "keyd has no active signing key yet; retry shortly.")
	errMethodNotAllowed = apiError(http.StatusMethodNotAllowed, "method_not_allowed", "This route does not accept that HTTP method.")
	errEmergency        = apiError(http.StatusServiceUnavailable, "emergency_pending", "An emergency rotation is under way: the compromised key no longer signs, and signing resumes once the new key is active (see /readyz).")
)

// emergencyIncomplete is the answer to an emergency rotation that did not
// complete: exactly what was kept of it, and what happens next.
func emergencyIncomplete(e *rotation.EmergencyError) *Error {
	msg := "The emergency rotation is recorded but did not complete; every replica refuses to sign with the compromised keys and retries it until it does (see /readyz)."
	if !e.Stored {
		msg = "The emergency rotation could not be recorded in the key backend and did not complete; this replica refuses to sign with the compromised keys and keeps retrying, but other replicas do not know of it and a restart forgets it: repeat the request once the backend accepts writes."
	}
	if e.Audited {
		msg += " A rotation_failed event is in the audit trail."
	} else {
		msg += " The audit trail could not take its rotation_failed event yet; it is retried."
	}
	return apiError(http.StatusServiceUnavailable, "rotation_failed", msg)
}

// forbidden is the 403 of a route that needs one of roles (each named as
// the operator knows it: see Config.RoleNames).
func (s *Server) forbidden(roles []auth.Role) *Error {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = cmp.Or(s.cfg.RoleNames[r], string(r))
	}
	need := "the role this route needs"
	if len(names) > 0 {
		need += ": " + strings.Join(names, " or ")
	}
	return apiError(http.StatusForbidden, "forbidden", "The bearer token is valid but does not hold "+need+".")
}

// unavailable is the 503 of a failing key backend, naming it.
func (s *Server) unavailable() *Error {
	backend := "The key backend"
	if d := s.cfg.BackendDescription; d != "" {
		backend += " (" + d + ")"
	}
	return apiError(http.StatusServiceUnavailable, "backend_unavailable",
		backend+" is unavailable; retry shortly, and see /readyz (lifecycle.last_error) for why.")
}

// routeRoles is the echo context key under which authorize keeps the roles
// the route needs, for the 403 of a backend that refuses later (a Vault
// token that cannot sign).
const routeRoles = "keyd.roles"

// toError maps any error to the one the client sees. Unknown errors become
// a 500 whose details stay in the log. roles are those the route needs.
func (s *Server) toError(err error, roles []auth.Role) (*Error, bool) {
	var ae *Error
	var ce *claims.Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		return ae, true
	case errors.As(err, &ce):
		return apiError(ce.Status, ce.Code, ce.Message), true
	case errors.Is(err, auth.ErrUnauthenticated):
		return errBadCredential, true
	case errors.Is(err, auth.ErrPermissionDenied):
		return s.forbidden(roles), true
	case errors.Is(err, signer.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		// A deadline is the request's budget spent waiting on the backend.
		return s.unavailable(), true
	case errors.Is(err, rotation.ErrEmergencyPending):
		return errEmergency, true
	case errors.Is(err, rotation.ErrNoKey):
		return errNoActiveKey, true
	case errors.As(err, &he):
		switch he.Code {
		case http.StatusNotFound:
			return apiError(he.Code, "not_found", "No such route; see docs/openapi.yaml."), true
		case http.StatusMethodNotAllowed:
			return errMethodNotAllowed, true
		case http.StatusRequestEntityTooLarge:
			return errTooLarge, true
		case http.StatusUnsupportedMediaType:
			return errNotJSON, true
		}
		if he.Code >= 400 && he.Code < 500 {
			return apiError(he.Code, "bad_request", "The request is malformed."), true
		}
	}
	return apiError(http.StatusInternalServerError, "internal", "keyd failed to handle the request; the error is logged."), false
}

// errorHandler is echo's HTTPErrorHandler: the one place errors become responses.
func (s *Server) errorHandler() echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		roles, _ := c.Get(routeRoles).([]auth.Role)
		e, known := s.toError(err, roles)
		if !known || e.Status >= 500 {
			s.log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "status", e.Status, "err", err)
		}
		render(c.Response(), c.Request().Method, e)
	}
}

// render writes e as the contract's error body (none for HEAD); a 503
// says when to retry.
func render(w http.ResponseWriter, method string, e *Error) {
	if e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if method == http.MethodHead {
		w.WriteHeader(e.Status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e)
}
