"""A runtime that cannot work here (status ``skip``) and a small HTTP Basic auth provider."""

import hmac

import attrs

from dockyard.core.config import option
from dockyard.core.drivers import DriverInfo, DriverKind
from dockyard.core.errors import DriverUnavailable, InvalidCredentials
from dockyard.core.hookspecs import hookimpl
from dockyard.core.httpauth import basic_credentials, format_challenge
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
        self.challenge_value = format_challenge("Basic", {"realm": config.realm})

    def authenticate(self, request):
        credentials = basic_credentials(request.headers)
        if credentials is None:
            return None
        expected = self.config.users.get(credentials.username)
        # An unknown user is compared with a stand-in, so both refusals take the same time.
        stand_in = "\0" * len(credentials.password)
        right = hmac.compare_digest(
            (expected if expected is not None else stand_in).encode(),
            credentials.password.encode(),
        )
        if expected is None or not right:
            raise InvalidCredentials("wrong user name or password", subject=credentials.username)
        return Identity(subject=credentials.username)

    def authorize(self, identity, access):
        if identity is not None:
            return access.actions
        return tuple(a for a in access.actions if a == "pull")

    def challenge(self, request, wanted, error=""):
        return {"WWW-Authenticate": self.challenge_value}


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
