"""keyd_jwks_status: the kids this process holds, the age of its last fetch of keyd's JWKS, the ETag."""

from django.core.management.base import BaseCommand, CommandError

from ... import keyset


class Command(BaseCommand):
    help = "Prints the kids JWT_PUBLIC_SIGNING_JWK_SET holds (keyd's or static), the last fetch's age and ETag."

    def handle(self, *args, **options):
        follower = keyset.current()
        if follower is None:
            raise CommandError("the keyd key set is not installed (KEYD_JWKS not set; see the startup log)")
        s = follower.status()
        self.stdout.write("source: {} (Keyd-Client {})".format(s["url"], s["client"]))
        if s["kids"]:
            for kid, origin in s["kids"]:
                self.stdout.write("kid: {} ({})".format(kid, origin))
        else:
            self.stdout.write("kids: none{}".format(" (emptied: MAX_STALENESS passed)" if s["emptied"] else ""))
        if s["last_fetch_age"] is None:
            self.stdout.write("last fetch: never successful ({})".format(s["last_error"] or "no fetch yet"))
        else:
            self.stdout.write("last fetch: {:.1f}s ago, ETag {}, max-age {:g}s".format(
                s["last_fetch_age"], s["etag"] or "none", s["max_age"]))
        if s["last_error"]:
            self.stdout.write("last error: {}".format(s["last_error"]))
        self.stdout.write("staleness limit: {:g}s; refresher in this process: {}".format(
            s["max_staleness"], "running" if s["refresher_running"] else "not running (no request served here)"))
        if not s["kids"]:
            raise CommandError("JWT_PUBLIC_SIGNING_JWK_SET holds no key: no token verifies in this process")
