// Package verify checks JWT access tokens signed by the LMS through keyd, for
// Open edX services (IDAs) written in Go.
//
// It accepts only asymmetric signatures (RS*, PS*, ES*, EdDSA) made with a key
// from a configured key set: a [RemoteKeySet] that follows keyd's JWKS URL and
// its cache headers, or a [StaticKeySet] built from the Open edX setting
// JWT_PUBLIC_SIGNING_JWK_SET. A token signed with "none" or an HMAC algorithm
// is refused with [ErrSymmetric] before any key is looked up, and a token that
// names its own key (jku, x5u, jwk, x5c) is refused with [ErrKeyInHeader]:
// keys come only from the key set.
//
// A typical IDA:
//
//	keys, err := verify.NewRemoteKeySet("https://keyd.example.com/.well-known/jwks.json", verify.RemoteConfig{})
//	if err != nil { ... }
//	v, err := verify.NewVerifier(keys, verify.Config{
//		Issuers:  []string{"https://lms.example.com/oauth2"},
//		Audience: "openedx",
//	})
//	if err != nil { ... }
//	e.Use(verifyecho.Middleware(v)) // package verify/verifyecho
//	e.GET("/me", func(c echo.Context) error {
//		claims, _ := verifyecho.ClaimsFrom(c)
//		return c.JSON(http.StatusOK, map[string]string{"user": claims.Username()})
//	})
//
// Every refusal wraps one of the package's sentinel errors (ErrExpired,
// ErrBadSignature, ...) so callers can branch with errors.Is, and [Reason]
// names it in one short word for logs and responses.
package verify
