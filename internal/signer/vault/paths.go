package vault

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/openedx-keyd/keyd/internal/signer"
)

// Every Vault path keyd reads or writes is built here.

// Transit: the signing key and its operations.
func transitKeyPath(mount, key string) string  { return mount + "/keys/" + key }
func transitSignPath(mount, key string) string { return mount + "/sign/" + key }

// keyOpPath is an operation on the key: "rotate", "trim" or "config".
func keyOpPath(keyPath, op string) string { return keyPath + "/" + op }

func (b *Backend) keyPath() string  { return transitKeyPath(b.mount, b.key) }
func (b *Backend) signPath() string { return transitSignPath(b.mount, b.key) }

// KV v2: an entry p of a mount is read and written at <mount>/data/p and
// listed at <mount>/metadata/p.
func kvDataPath(mount, p string) string     { return mount + "/data/" + p }
func kvMetadataPath(mount, p string) string { return mount + "/metadata/" + p }
func kvConfigPath(mount string) string      { return mount + "/config" }

func (b *Backend) kvPath(p string) string { return kvDataPath(b.kv, p) }

// Auth methods: a role of the AppRole mount, and a method's login.
func appRolePath(name string) string { return "auth/" + AppRoleMount + "/role/" + name }
func loginPath(mount string) string  { return "auth/" + strings.Trim(mount, "/") + "/login" }

// keyd's KV v2 entries, within the KV mount: records/<version> (lifecycle
// records, created once), locks/rotate-<version> (rotation claims),
// intent/emergency, roles/admin and roles/auditor (read only to tell the
// roles apart) and audit/<seq> (the audit chain).
const intentPath = "intent/emergency"

func recordPath(v int) string     { return "records/" + strconv.Itoa(v) }
func claimPath(v int) string      { return "locks/rotate-" + strconv.Itoa(v) }
func rolePath(role string) string { return "roles/" + role }

// seqDigits is the width of the zero-padded seq in an audit entry's name, so
// that names sort in seq order.
const seqDigits = 12

// auditDir holds the audit chain's entries.
const auditDir = "audit"

func auditPath(seq int64) string { return fmt.Sprintf("%s/%0*d", auditDir, seqDigits, seq) }

// Observed propagation, under propagation/: observations/<client> (one
// entry per client holding its instances, merged with check-and-set),
// confirmations/<version>/<client> and activations/<version> (each created
// once, never rewritten).
const propagationDir = "propagation/"

func observationsPath(client string) string {
	return propagationDir + "observations/" + signer.PathName(client)
}

const confirmationsDir = propagationDir + "confirmations"

// versionConfirmationsDir is the directory of a version's confirmations, v
// its number or its name as a list answers it ("<v>/").
func versionConfirmationsDir(v string) string { return confirmationsDir + "/" + v }

func confirmationPath(v int, client string) string {
	return versionConfirmationsDir(strconv.Itoa(v)) + "/" + signer.PathName(client)
}

const activationsDir = propagationDir + "activations"

func activationPath(v int) string { return activationsDir + "/" + strconv.Itoa(v) }

// slotPath is the path of a decision's n-th entry (n from 1): p, then
// p~2, p~3... ("~" and a digit never end a client's path name).
func slotPath(p string, n int) string {
	if n == 1 {
		return p
	}
	return p + "~" + strconv.Itoa(n)
}
