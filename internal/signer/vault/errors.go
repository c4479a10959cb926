package vault

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/hashicorp/vault/api"
	"github.com/openedx-keyd/keyd/internal/signer"
)

// Explain rewrites the Vault API error inside err, if any, as one line
// naming the request and Vault's reason, "<METHOD> <path>: <status>:
// <reason>", in place of the vault/api package's multi-line dump; the rest of
// the message is kept. The result still wraps err (errors.Is and errors.As
// see through it). Errors without a Vault API error, nil included, and errors
// Explain has already rewritten are returned as they are.
func Explain(err error) error {
	var re *api.ResponseError
	if err == nil || !errors.As(err, &re) {
		return err
	}
	msg := err.Error()
	dump := re.Error()
	if !strings.Contains(msg, dump) {
		return err // already explained, or a message that does not embed it
	}
	return &explained{msg: strings.Replace(msg, dump, describe(re), 1), err: err}
}

var multierrorHead = regexp.MustCompile(`^\d+ errors? occurred:$`)

type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// describe is one line for a Vault API error.
func describe(re *api.ResponseError) string {
	path := re.URL
	if u, err := url.Parse(re.URL); err == nil && u.Path != "" {
		path = u.Path
	}
	var reasons []string
	for _, e := range re.Errors {
		if re.RawError { // not Vault's JSON: the body as it came
			reasons = append(reasons, strings.Join(strings.Fields(e), " "))
			continue
		}
		// Vault often answers a go-multierror text: "1 error occurred:",
		// then one "\t* reason" line each.
		for _, line := range strings.Split(e, "\n") {
			line = strings.TrimPrefix(strings.TrimSpace(line), "* ")
			if line = strings.Join(strings.Fields(line), " "); line != "" && !multierrorHead.MatchString(line) {
				reasons = append(reasons, line)
			}
		}
	}
	reason := strings.Join(reasons, "; ")
	if reason == "" {
		reason = strings.ToLower(http.StatusText(re.StatusCode))
	}
	if len(reason) > 300 { // a raw body (an HTML error page of a proxy)
		cut := 300
		for cut > 0 && reason[cut]&0xc0 == 0x80 {
			cut--
		}
		reason = reason[:cut] + "..."
	}
	ns := ""
	if re.NamespacePath != "" && re.NamespacePath != "root/" {
		ns = " (namespace " + re.NamespacePath + ")"
	}
	return fmt.Sprintf("%s %s%s: %d: %s", re.HTTPMethod, path, ns, re.StatusCode, reason)
}

// no HTTP answer at all (refused, reset, timeout), 5xx (down, sealed,
// standby without a leader) or 429.
func isUnavailable(err error) bool {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode >= 500 || re.StatusCode == 429
	}
	return true
}

func statusOf(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// wrap names the failed operation, and marks an unreachable Vault with
// signer.ErrUnavailable. A nil err stays nil.
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case isUnavailable(err):
		return Explain(fmt.Errorf("%w: vault %s: %w", signer.ErrUnavailable, op, err))
	}
	return Explain(fmt.Errorf("vault: %s: %w", op, err))
}
