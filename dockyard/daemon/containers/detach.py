"""Detach keys: the key sequence that detaches a client from a container's (or an exec's) TTY.

docker's syntax (``ctrl-p,ctrl-q``, the default) names one key per comma-separated item: a
single character stands for itself, ``ctrl-@`` … ``ctrl-_`` for the control codes 0 to 31, and
``DEL`` for 127. As in dockerd, the daemon watches for the sequence only on a TTY's input;
without a TTY the client's bytes go to the process unread.
"""

from __future__ import annotations

import attrs

from dockyard.core.errors import InvalidParameter

#: ``ctrl-p,ctrl-q``: what dockerd uses when the client names no keys.
DEFAULT_DETACH_KEYS = b"\x10\x11"

#: Names of the control codes 0 to 31, in code order ("ctrl-@" is 0, "ctrl-a" is 1 ...).
_CONTROL_NAMES = ("ctrl-@", *(f"ctrl-{chr(c)}" for c in range(ord("a"), ord("z") + 1)),
                  "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^", "ctrl-_")  # fmt: skip


def key_codes(spec: str) -> bytes | None:
    """The bytes ``spec`` names, or ``None`` when one of its items names no key (docker's
    rules: exact, lower-case names; one byte per plain character; no empty items)."""
    codes = bytearray()
    for key in spec.split(","):
        encoded = key.encode()
        if len(encoded) == 1:
            codes += encoded
        elif key in _CONTROL_NAMES:
            codes.append(_CONTROL_NAMES.index(key))
        elif key == "DEL":
            codes.append(127)
        else:
            return None
    return bytes(codes)


#: dockerd's words for a bad ``detachKeys`` on attach, and a bad ``DetachKeys`` on exec
#: create (where dockerd answers 500; it is the client's mistake, so a 400 here).
ATTACH_REFUSAL = "Invalid detach keys ({}) provided"
EXEC_REFUSAL = "Invalid escape keys ({}) provided"


def detach_keys(spec: str, refusal: str) -> bytes:
    """The sequence a request names, dockerd's default when it names none; a bad one is
    refused with ``refusal`` (:data:`ATTACH_REFUSAL` or :data:`EXEC_REFUSAL`)."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    codes = key_codes(spec)
    if codes is None:
        raise InvalidParameter(refusal.format(spec))
    return codes


@attrs.define
class DetachScanner:
    """Finds the detach sequence in a stream of input, as dockerd's escape proxy does.

    Bytes that may begin the sequence are held back; when the sequence breaks off they are
    passed on, and the byte that broke it is passed on too without starting a new match.
    """

    keys: bytes
    matched: int = 0
    detached: bool = False

    def feed(self, data: bytes) -> bytes:
        """What of ``data`` goes to the process; sets :attr:`detached` at the sequence's end
        (nothing after it is delivered)."""
        out = bytearray()
        for byte in data:
            if byte == self.keys[self.matched]:
                self.matched += 1
                if self.matched == len(self.keys):
                    self.detached = True
                    self.matched = 0
                    return bytes(out)
                continue
            if self.matched:
                out += self.keys[: self.matched]
                self.matched = 0
            out.append(byte)
        return bytes(out)
