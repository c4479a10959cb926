#!/bin/sh
# Creates the Vault credentials of the docker-compose demo, after `keyd bootstrap` has written the
# policies: a token per keyd role, keyd's own server token, and the AppRole the LMS logs in with
# in production. Writes each to /keyd-tokens/<name> and prints them. Safe to run again.
#
# DEV ONLY: it runs with the root token and creates tokens with fixed IDs and long TTLs so that the
# demo works without a shell in the keyd image. Production: the LMS logs in with AppRole (below),
# keyd's own token comes from AppRole or Vault Agent, and people use their own auth method.
#
# Environment: VAULT_ADDR, ROOT_TOKEN, KEYD_SERVER_TOKEN, LMS_TOKEN, ADMIN_TOKEN, AUDITOR_TOKEN.
set -eu

: "${VAULT_ADDR:?}" "${ROOT_TOKEN:?}" "${KEYD_SERVER_TOKEN:?}"
: "${LMS_TOKEN:?}" "${ADMIN_TOKEN:?}" "${AUDITOR_TOKEN:?}"
export VAULT_TOKEN="$ROOT_TOKEN"
out=${TOKENS_DIR:-/keyd-tokens}
umask 077
mkdir -p "$out"

for p in keyd-server keyd-lms-signer keyd-admin keyd-auditor; do
	if ! vault policy read "$p" >/dev/null 2>&1; then
		echo "policy $p is missing: run 'keyd bootstrap' first" >&2
		exit 1
	fi
done

# token NAME ID POLICY [vault token create flags...]: creates the token unless it exists.
token() {
	name=$1 id=$2 policy=$3
	shift 3
	if vault token lookup "$id" >/dev/null 2>&1; then
		echo "token $name: exists"
	else
		# Vault warns that custom token IDs are hashed with SHA1; expected for these demo IDs, so
		# the output is shown only when the call fails.
		if ! msg=$(vault token create -id="$id" -policy="$policy" -orphan -display-name="$name" "$@" 2>&1); then
			echo "$msg" >&2
			exit 1
		fi
		echo "token $name: created with policy $policy"
	fi
	printf '%s\n' "$id" >"$out/$name"
}

# keyd's own token is periodic: keyd renews it while it runs.
token keyd-server "$KEYD_SERVER_TOKEN" keyd-server -period=24h
# DEV ONLY: long-lived role tokens for the demo (768h is the dev server's maximum).
token lms "$LMS_TOKEN" keyd-lms-signer -ttl=768h
token admin "$ADMIN_TOKEN" keyd-admin -ttl=768h
token auditor "$AUDITOR_TOKEN" keyd-auditor -ttl=768h

# The LMS's production path: AppRole "lms" with policy keyd-lms-signer and short-lived tokens.
# Production adds secret_id_bound_cidrs=<LMS hosts> and token_bound_cidrs=<LMS hosts>,<keyd hosts>.
if ! vault auth list -format=json | grep -q '"approle/"'; then
	vault auth enable approle >/dev/null
	echo "auth method approle: enabled"
fi
vault write auth/approle/role/lms \
	token_policies=keyd-lms-signer \
	token_ttl=15m token_max_ttl=1h \
	secret_id_ttl=24h >/dev/null
vault read -field=role_id auth/approle/role/lms/role-id >"$out/lms-role-id"
vault write -f -field=secret_id auth/approle/role/lms/secret-id >"$out/lms-secret-id"
echo "approle lms: role_id and a new secret_id written to $out"

cat <<EOF

Demo credentials (DEV ONLY):
  LMS (signer)  $LMS_TOKEN
  admin         $ADMIN_TOKEN
  auditor       $AUDITOR_TOKEN

Try, from the host:
  curl -s http://localhost:8081/.well-known/jwks.json
  curl -s -H 'Authorization: Bearer $LMS_TOKEN' -H 'Content-Type: application/json' \\
    -d '{"claims":{"iss":"http://localhost:18000/oauth2","aud":"openedx","sub":"anon-1","grant_type":"password"}}' \\
    http://localhost:8082/v1/sign
  curl -s -H 'Authorization: Bearer $AUDITOR_TOKEN' http://localhost:8081/v1/keys
  keyd rotate --server http://localhost:8081 --token $ADMIN_TOKEN
  VAULT_ADDR=http://127.0.0.1:8200 keyd audit verify --vault --token $AUDITOR_TOKEN

LMS AppRole login (what the LMS does in production); role_id and secret_id are in the volume:
  docker-compose run --rm --entrypoint cat bootstrap-tokens $out/lms-role-id $out/lms-secret-id
  vault write auth/approle/login role_id=<role_id> secret_id=<secret_id>
EOF
