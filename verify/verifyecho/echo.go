// Package verifyecho is the echo middleware of package verify: it verifies
// the request's token and hands its claims to the next handlers. It is its
// own package so that programs using verify without echo do not link echo.
package verifyecho

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/openedx-keyd/keyd/verify"
)

// claimsKey is where Middleware stores the claims in the request's
// context.Context.
type claimsKey struct{}

const echoClaimsKey = "keyd.verify.claims"

// Middleware verifies the token in "Authorization: Bearer <token>" (or the
// Open edX form "JWT <token>") and makes its claims available to the next
// handlers through ClaimsFrom and ClaimsFromContext. A request without a
// valid token gets 401 with {"error": <code>, "message": <sentence>}, the code
// being "missing_token" or verify.Reason(err); when the keys themselves cannot
// be trusted (verify.ErrKeySetUnavailable, verify.ErrStaleKeys) it gets 503
// instead.
func Middleware(v *verify.Verifier) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			token, ok := bearer(c.Request().Header.Get(echo.HeaderAuthorization))
			if !ok {
				return refuse(c, http.StatusUnauthorized, "missing_token", "the request has no Bearer or JWT token in its Authorization header")
			}
			req := c.Request()
			claims, err := v.Verify(req.Context(), token)
			if err != nil {
				if serverSide(err) {
					return refuse(c, http.StatusServiceUnavailable, verify.Reason(err), "the keys to verify the token are unavailable; try again later")
				}
				return refuse(c, http.StatusUnauthorized, verify.Reason(err), strings.TrimPrefix(err.Error(), "verify: "))
			}
			c.Set(echoClaimsKey, claims)
			c.SetRequest(req.WithContext(context.WithValue(req.Context(), claimsKey{}, claims)))
			return next(c)
		}
	}
}

// ClaimsFrom returns the claims Middleware verified for this request.
func ClaimsFrom(c echo.Context) (*verify.Claims, bool) {
	claims, ok := c.Get(echoClaimsKey).(*verify.Claims)
	return claims, ok
}

// ClaimsFromContext returns the claims Middleware verified, from the
// request's context.
func ClaimsFromContext(ctx context.Context) (*verify.Claims, bool) {
	claims, ok := ctx.Value(claimsKey{}).(*verify.Claims)
	return claims, ok
}

// serverSide reports whether err is the verifier's fault rather than the
// token's: the keys could not be obtained.
func serverSide(err error) bool {
	return errors.Is(err, verify.ErrKeySetUnavailable) || errors.Is(err, verify.ErrStaleKeys)
}

// bearer extracts the token of a "Bearer" or "JWT" Authorization header.
func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "JWT")) {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func refuse(c echo.Context, status int, code, message string) error {
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
	return c.JSON(status, map[string]string{"error": code, "message": message})
}
