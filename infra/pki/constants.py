"""The PKI's fixed names: items, profiles, scopes, hints and warnings."""

from __future__ import annotations

from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "cfssl"
KEY_SIZES = {"ecdsa": (256, 384, 521), "rsa": (2048, 4096)}
CFSSL_HINT = ("install cfssl and cfssljson: on Debian/Ubuntu `sudo apt-get install golang-cfssl`; "
              "elsewhere the release binaries from https://github.com/cloudflare/cfssl/releases")
OPENSSL_HINT = "install openssl: on Debian/Ubuntu `sudo apt-get install openssl`"

ROOT = "root"
INTERMEDIATE = "intermediate"
# Extended key usage openssl prints for each cfssl profile.
PROFILE_EKU = {
    "server": ("TLS Web Server Authentication",),
    "client": ("TLS Web Client Authentication",),
    "peer": ("TLS Web Server Authentication", "TLS Web Client Authentication"),
}
PROFILE_PURPOSE = {"server": ("sslserver",), "client": ("sslclient",),
                   "peer": ("sslserver", "sslclient")}
# Which items each task is responsible for (missing prerequisites are created too).
SCOPES = {
    "ca": (ROOT,),
    "intermediate": (ROOT, INTERMEDIATE),
    "registry": (ROOT, INTERMEDIATE, "registry-server", "registry-client", "registry-peer"),
}
ROOT_REPLACE_WARNING = (
    "replacing the root CA breaks every certificate issued under the old one: the intermediate "
    "and all leaves are reissued here, but every docker host that trusts the old root "
    "(certs.d/<registry>/ca.crt) must run `invoke certs.trust` again, every browser or OS trust "
    "store holding the old ca.pem must import the new one, and services serving the old "
    "certificates must be restarted. The old files are kept under CERTS_DIR/replaced/.")
INTERMEDIATE_REPLACE_WARNING = (
    "replacing the intermediate CA reissues every leaf certificate: services serving the old "
    "ones (zot, traefik) must be restarted, and clients holding old registry-client "
    "certificates need the new ones. The root stays, so docker trust (certs.d) is unaffected. "
    "The old files are kept under CERTS_DIR/replaced/.")


