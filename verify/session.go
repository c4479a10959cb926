package verify

import (
	"context"
	"errors"
	"fmt"
)

// Session-exchange error codes, as the LMS's JWT→session endpoint answers them.
const (
	CodeNonAsymmetricToken = "non_asymmetric_token" // alg is none or HS*
	CodeNonSupportedToken  = "non_supported_token"  // grant_type is not "password"
	CodeAccountDisabled    = "account_disabled"     // the account check said so
	CodeInvalidToken       = "invalid_token"        // any other verification failure
)

// ExchangeError is a refused session exchange: Code is one of the Code*
// constants, Err the reason, wrapping a package sentinel.
type ExchangeError struct {
	Code string
	Err  error
}

func (e *ExchangeError) Error() string { return e.Err.Error() }
func (e *ExchangeError) Unwrap() error { return e.Err }

// AccountCheck reports whether the account of username is disabled. An error
// means it could not tell.
type AccountCheck func(ctx context.Context, username string) (disabled bool, err error)

// SessionExchange applies the rules of the LMS's JWT→session exchange: only
// asymmetric tokens, only password grants, only enabled accounts.
type SessionExchange struct {
	verifier        *Verifier
	accountDisabled AccountCheck
}

// NewSessionExchange returns an exchange policy using v and the caller's
// account check.
func NewSessionExchange(v *Verifier, accountDisabled AccountCheck) (*SessionExchange, error) {
	if v == nil || accountDisabled == nil {
		return nil, errors.New("verify: session exchange needs a verifier and an account check")
	}
	return &SessionExchange{verifier: v, accountDisabled: accountDisabled}, nil
}

// Check decides whether token may be exchanged for a session, in the LMS's
// order: the token is asymmetric (else CodeNonAsymmetricToken), it verifies
// (else CodeInvalidToken), its grant_type is "password" (else
// CodeNonSupportedToken), and the account of Claims.Username is not disabled
// (else CodeAccountDisabled). Refusals are *ExchangeError; an error from the
// account check itself is returned wrapped as it is, since it says nothing
// about the token.
func (x *SessionExchange) Check(ctx context.Context, token string) (*Claims, error) {
	claims, err := x.verifier.Verify(ctx, token)
	switch {
	case errors.Is(err, ErrSymmetric): // Verify checks the alg before anything else
		return nil, &ExchangeError{Code: CodeNonAsymmetricToken, Err: err}
	case errors.Is(err, ErrGrantType): // v was configured with a GrantType of its own
		return nil, &ExchangeError{Code: CodeNonSupportedToken, Err: err}
	case err != nil:
		return nil, &ExchangeError{Code: CodeInvalidToken, Err: err}
	case claims.GrantType != "password":
		err := fmt.Errorf("%w: grant_type %q, only \"password\" grants can be exchanged for a session", ErrGrantType, claims.GrantType)
		return nil, &ExchangeError{Code: CodeNonSupportedToken, Err: err}
	}
	username := claims.Username()
	disabled, err := x.accountDisabled(ctx, username)
	if err != nil {
		return nil, fmt.Errorf("verify: account check for %q: %w", username, err)
	}
	if disabled {
		return nil, &ExchangeError{Code: CodeAccountDisabled, Err: fmt.Errorf("%w: %q", ErrAccountDisabled, username)}
	}
	return claims, nil
}
