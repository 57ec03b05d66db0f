"""A runtime that cannot work here (status ``skip``) and a small HTTP Basic auth provider."""

import base64
import hmac

import attrs

from dockyard.core.config import option
from dockyard.core.drivers import DriverInfo, DriverKind
from dockyard.core.errors import DriverUnavailable, InvalidCredentials
from dockyard.core.hookspecs import hookimpl
from dockyard.core.interfaces import Identity


def _needs_frobnicator():
    raise DriverUnavailable("needs the frobnicator kernel module, which this machine lacks")


def _no_runtime(config, context):
    raise AssertionError("an unusable driver must never be built")


@hookimpl
def dockyard_runtimes():
    return DriverInfo(
        name="frob",
        kind=DriverKind.RUNTIME,
        factory=_no_runtime,
        description="runs containers on the frobnicator",
        check=_needs_frobnicator,
        priority=100,
    )


@attrs.frozen
class StaticAuthConfig:
    users: dict[str, str] = option({}, "user name -> password")
    realm: str = option("lab", "realm named in the challenge")


class StaticAuth:
    """Users and passwords from the config; anonymous callers may only pull."""

    def __init__(self, config):
        self.config = config

    def authenticate(self, request):
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            raise InvalidCredentials("malformed Basic credentials") from None
        expected = self.config.users.get(user)
        if expected is None or not hmac.compare_digest(expected, password):
            raise InvalidCredentials("wrong user name or password", subject=user)
        return Identity(subject=user)

    def authorize(self, identity, access):
        if identity is not None:
            return access.actions
        return tuple(a for a in access.actions if a == "pull")

    def challenge(self, request, wanted, error=""):
        return {"WWW-Authenticate": f'Basic realm="{self.config.realm}"'}


@hookimpl
def dockyard_auth_providers():
    return DriverInfo(
        name="static",
        kind=DriverKind.AUTH,
        factory=lambda config, context: StaticAuth(config),
        config_class=StaticAuthConfig,
        description="users and passwords from the config file (HTTP Basic)",
    )


def _refuses_its_state_dir(config, context):
    from dockyard.core.errors import DriverUnavailable

    raise DriverUnavailable(f"{context.state_dir} is on a filesystem this driver cannot use")


@hookimpl
def dockyard_storage_drivers():
    return DriverInfo(
        name="picky",
        kind=DriverKind.STORAGE,
        factory=_refuses_its_state_dir,
        description="a driver that finds out only when built that it cannot work here",
        priority=1000,
    )
