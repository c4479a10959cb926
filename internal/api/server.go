// Package api is keyd's HTTP surface: routes, the role check (one
// auth.Authorizer, asked with the route's roles from auth.Routes), and the one
// function that turns every error into {"error","message"}.
package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/openedx-keyd/keyd/internal/audit"
	"github.com/openedx-keyd/keyd/internal/auth"
	"github.com/openedx-keyd/keyd/internal/claims"
	"github.com/openedx-keyd/keyd/internal/issue"
	"github.com/openedx-keyd/keyd/internal/jwks"
	"github.com/openedx-keyd/keyd/internal/metrics"
	"github.com/openedx-keyd/keyd/internal/rotation"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// MaxBody is the largest request body accepted.
const MaxBody = 64 << 10

// Lifecycle is what the API needs from the rotation manager.
type Lifecycle interface {
	Snapshot() *rotation.Snapshot
	Rotate(ctx context.Context, req rotation.RotateRequest) (rotation.Published, error)
	Health() rotation.Health
}

// Issuer turns a sign request body into a token for an authorized caller
// (internal/issue): claims policy, the key the rules pick, the backend's
// signature. actor names the caller in its log.
type Issuer interface {
	Issue(ctx context.Context, cred signer.Credential, actor string, body []byte) (issue.Token, error)
}

// AuditTrail reads the audit chain for GET /v1/audit.
type AuditTrail interface {
	// Page returns the events with seq > since, oldest first, and whether
	// the whole chain verifies.
	Page(ctx context.Context, since int64) (events []audit.Event, chainValid bool, err error)
}

// Config wires a Server. Audit may be nil until the trail is configured.
type Config struct {
	Auth      auth.Authorizer
	Backend   signer.Backend // its Name, for /readyz
	Lifecycle Lifecycle
	Issuer    Issuer
	JWKS      *jwks.Handler
	Audit     AuditTrail
	// Propagation serves /v1/propagation; nil: those routes answer 503.
	Propagation Propagation
	Problems    func() []string // what is wrong with the files keyd keeps, for /readyz; may be nil
	Login       func() string   // why keyd's own backend login fails now, "" when it does not; may be nil
	Metrics     *metrics.Metrics
	Gatherer    prometheus.Gatherer
	Logger      *slog.Logger
	// BackendDescription names the backend in a 503 backend_unavailable
	// ("Vault at https://vault:8200", "the local data dir /srv/keyd");
	// empty: "the key backend".
	BackendDescription string
	// RoleNames names a role in a 403 as the operator knows it (Vault
	// mode: its policy); a role not in it is named as it is.
	RoleNames map[auth.Role]string
	// PID is the process ID /readyz reports (pid), so that a script that
	// started keyd can tell it answers and not another server; 0: absent.
	PID int
	// SignTimeout bounds a whole sign request (--sign-timeout): the
	// caller's authorization, the signature and every retry within them.
	// What is not done by then is a 503 with Retry-After. Zero: no bound.
	SignTimeout time.Duration
}

// Server holds the handlers.
type Server struct {
	cfg Config
	log *slog.Logger
}

// JWKSPath is the route of the public JWKS.
const JWKSPath = "/.well-known/jwks.json"

// Handler serves the contract's routes: the JWKS, the hottest route (every
// IDA fetches it), straight from the jwks.Handler without routing or a
// request context; every other route through echo.
type Handler struct {
	echo *echo.Echo
	jwks http.Handler
	srv  *Server
}

// Ready is what /readyz answers now: true for a 200 (the keyd_ready gauge).
func (h *Handler) Ready() bool { return h.srv.readiness().Ready }

// jwksAllow is the Allow header of the JWKS route.
const jwksAllow = "OPTIONS, GET, HEAD"

// ServeHTTP serves the JWKS route (GET and HEAD; OPTIONS and any other
// method answered as echo answers its own routes), and every other request
// through echo.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != JWKSPath {
		h.echo.ServeHTTP(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.jwks.ServeHTTP(w, r)
	case http.MethodOptions:
		w.Header().Set("Allow", jwksAllow)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", jwksAllow)
		render(w, r.Method, errMethodNotAllowed)
	}
}

// New returns the handler serving the contract's routes.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler()
	e.Use(recoverer(s.log))

	e.POST("/v1/sign", s.sign)
	e.GET("/v1/keys", s.keys)
	e.POST("/v1/rotate", s.rotate)
	e.GET("/v1/audit", s.audit)
	e.GET("/v1/audit/report", s.auditReport)
	e.GET("/v1/propagation", s.propagation)
	e.POST("/v1/propagation/confirm", s.confirm)
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.readyz)
	if cfg.Gatherer != nil {
		e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))
	}
	return &Handler{echo: e, jwks: cfg.JWKS, srv: s}
}

// recoverer turns a panic into a logged 500 instead of a dropped connection.
func recoverer(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					log.Error("panic in handler", "path", c.Path(), "panic", r)
					err = errors.New("panic")
				}
			}()
			return next(c)
		}
	}
}

// authorize checks the bearer token for one of the roles route needs
// (auth.Routes).
func (s *Server) authorize(c echo.Context, route auth.Route) (auth.Principal, error) {
	roles := route.Roles()
	h := c.Request().Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	c.Set(routeRoles, roles)
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return auth.Principal{}, errNoCredential
	}
	return s.cfg.Auth.Authorize(c.Request().Context(), strings.TrimSpace(tok), roles...)
}

// readBody reads at most MaxBody bytes; a longer body is a 413. A body that
// is not empty must be sent as application/json (a 415 otherwise), so that
// what a proxy or a reviewer takes the body for is what keyd decodes.
func readBody(c echo.Context) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > MaxBody {
		return nil, errTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, apiError(http.StatusBadRequest, "bad_body", "The request body could not be read.")
	}
	if len(b) > MaxBody {
		return nil, errTooLarge
	}
	if len(bytes.TrimSpace(b)) > 0 && !isJSON(r.Header.Get("Content-Type")) {
		return nil, errNotJSON
	}
	return b, nil
}

// isJSON reports whether a Content-Type is application/json, with any
// parameters (charset=utf-8).
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

func (s *Server) sign(c echo.Context) error {
	start := time.Now()
	if s.cfg.SignTimeout > 0 {
		// One budget for the whole request: a backend that hangs (a
		// partition) answers 503 in time, however many calls and retries
		// the request would otherwise make.
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.SignTimeout)
		defer cancel()
		c.SetRequest(c.Request().WithContext(ctx))
	}
	p, err := s.authorize(c, auth.RouteSign)
	if err != nil {
		s.cfg.Metrics.SignRequest("unauthorized", "")
		return err
	}
	body, err := readBody(c)
	if err != nil {
		s.cfg.Metrics.SignRequest("bad_request", "")
		return err
	}
	// The issuing service counts and logs every outcome from here on.
	t, err := s.cfg.Issuer.Issue(c.Request().Context(), p.Credential, p.Actor, body)
	if err != nil {
		return err
	}
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.SignDuration.WithLabelValues(string(t.Alg)).Observe(time.Since(start).Seconds())
	}
	return c.JSON(http.StatusOK, SignResponse{Token: t.JWT, KID: t.KID, Alg: string(t.Alg), ExpiresAt: t.ExpiresAt.UTC().Format(time.RFC3339)})
}

func (s *Server) keys(c echo.Context) error {
	if _, err := s.authorize(c, auth.RouteKeys); err != nil {
		return err
	}
	snap := s.cfg.Lifecycle.Snapshot()
	if snap == nil {
		return errNoActiveKey
	}
	out := make([]Key, 0, len(snap.Keys))
	for _, k := range snap.Keys {
		ki := describe(k)
		if g := snap.Plan.Gate; g != nil && g.Version == k.Version {
			ki.WaitingFor = waitingFor(g)
		}
		out = append(out, ki)
	}
	return c.JSON(http.StatusOK, KeyList{Keys: out})
}

func describe(k rotation.Published) Key {
	ki := Key{
		KID: k.KID, Version: k.Version, Alg: string(k.Algorithm), State: string(k.State),
		CreatedAt:   k.CreatedAt.UTC().Format(time.RFC3339),
		ActivatesAt: k.ActivatesAt.UTC().Format(time.RFC3339),
		Emergency:   k.Emergency,
	}
	if !k.RetiresAt.IsZero() {
		r := k.RetiresAt.UTC().Format(time.RFC3339)
		ki.RetiresAt = &r
	}
	return ki
}

// rotateMembers are the members of a rotate body; adopt_settings (an
// extension of the contract) creates the key under this replica's settings
// although they differ from the newest key's.
var rotateMembers = []string{"emergency", "reason", "adopt_settings"}

type rotateRequest struct {
	Emergency, AdoptSettings bool
	Reason                   string
}

// decodeRotate decodes a rotate body as strictly as a sign body; an empty
// body is a normal rotation.
func decodeRotate(body []byte) (rotateRequest, error) {
	var req rotateRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	b, err := claims.DecodeBody(body, rotateMembers...)
	if err != nil {
		return req, err
	}
	if req.Emergency, err = b.Bool("emergency"); err != nil {
		return req, err
	}
	if req.AdoptSettings, err = b.Bool("adopt_settings"); err != nil {
		return req, err
	}
	req.Reason, err = b.String("reason")
	return req, err
}

func (s *Server) rotate(c echo.Context) error {
	p, req, err := adminRequest(s, c, auth.RouteRotate, decodeRotate)
	if err != nil {
		return err
	}
	req.Reason = strings.TrimSpace(req.Reason)
	if req.Emergency && req.Reason == "" {
		return apiError(http.StatusBadRequest, "reason_required", "An emergency rotation needs a reason.")
	}
	if len(req.Reason) > 1024 {
		return apiError(http.StatusBadRequest, "reason_too_long", "The reason must be at most 1024 bytes.")
	}
	k, err := s.cfg.Lifecycle.Rotate(c.Request().Context(), rotation.RotateRequest{
		Emergency: req.Emergency, Reason: req.Reason, Actor: p.Actor, AdoptSettings: req.AdoptSettings,
	})
	if errors.Is(err, rotation.ErrConfigMismatch) {
		return apiError(http.StatusConflict, "config_mismatch", "This replica's settings differ from the newest key's ("+
			strings.TrimPrefix(err.Error(), rotation.ErrConfigMismatch.Error()+": ")+
			"); deploy the same settings on every replica, then rotate with \"adopt_settings\": true to adopt them.")
	}
	var ee *rotation.EmergencyError
	if errors.As(err, &ee) {
		s.log.Error("emergency rotation incomplete", "actor", p.Actor, "intent_stored", ee.Stored, "audited", ee.Audited, "err", err)
		return emergencyIncomplete(ee)
	}
	if err != nil {
		if !errors.Is(err, signer.ErrUnavailable) {
			s.log.Error("rotation failed", "actor", p.Actor, "err", err)
			return apiError(http.StatusServiceUnavailable, "rotation_failed", "The rotation could not be completed; the cause is logged and shown in /readyz (lifecycle.last_error). Retry the request.")
		}
		return err
	}
	return c.JSON(http.StatusOK, RotateResponse{KID: k.KID, State: string(k.State), Version: k.Version})
}

func (s *Server) audit(c echo.Context) error {
	if _, err := s.authorize(c, auth.RouteAudit); err != nil {
		return err
	}
	var since int64
	if v := c.QueryParam("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return apiError(http.StatusBadRequest, "bad_since", "since must be a non-negative integer sequence number.")
		}
		since = n
	}
	if s.cfg.Audit == nil {
		return apiError(http.StatusServiceUnavailable, "audit_unavailable", "The audit trail is not configured.")
	}
	events, valid, err := s.cfg.Audit.Page(c.Request().Context(), since)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, AuditPage{ChainValid: valid, Events: events})
}

func (s *Server) readyz(c echo.Context) error {
	r := s.readiness()
	status := http.StatusOK
	if !r.Ready {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, r)
}

// readiness is the /readyz body as of now.
func (s *Server) readiness() Readiness {
	r := Readiness{Backend: s.cfg.Backend.Name(), Lifecycle: lifecycleOf(s.cfg.Lifecycle.Health()), PID: s.cfg.PID}
	if s.cfg.Problems != nil {
		r.Storage = s.cfg.Problems()
	}
	if s.cfg.Login != nil {
		r.Login = s.cfg.Login()
	}
	snap := s.cfg.Lifecycle.Snapshot()
	if d := s.cfg.JWKS.Current(); d != nil {
		r.JWKSKeys = d.Keys
	}
	// Ready once a JWKS with an active key exists, also while the backend is
	// down: replicas must keep serving the last good JWKS.
	// Until the snapshot is stale: older than propagation-delay -
	// jwks-max-age, it may miss a key other replicas sign with (the JWKS
	// is still served; the load balancer prefers fresh replicas).
	r.Ready = snap != nil && snap.HasActive && r.JWKSKeys > 0 && !r.Lifecycle.Stale
	return r
}

// PublishKeys is the rotation OnChange hook that keeps the JWKS document in
// step with the published keys (pending, active, retiring).
func PublishKeys(h *jwks.Handler, log *slog.Logger) func(*rotation.Snapshot) {
	return func(s *rotation.Snapshot) {
		keys := make([]jwks.Key, 0, len(s.Keys))
		for _, k := range s.Keys {
			keys = append(keys, jwks.Key{KID: k.KID, Alg: string(k.Algorithm), Public: k.Public, Version: k.Version})
		}
		doc, changed, err := h.Publish(keys)
		switch {
		case err != nil:
			log.Error("cannot build the JWKS; keeping the previous one", "err", err)
		case changed:
			log.Info("jwks published", "keys", doc.Keys, "etag", doc.ETag)
		}
	}
}
