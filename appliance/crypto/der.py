"""A small read-only BER/DER reader (X.690) for the few structures inspected before any key
derivation: PKCS#8 EncryptedPrivateKeyInfo (RFC 5958) and PKCS#12 PFX (RFC 7292).

BER, not only DER, because PKCS#12 files in the wild use indefinite lengths and
constructed OCTET STRINGs (NSS, some Java versions), and OpenSSL opens those.

Invariants: bounded work on hostile input (nesting depth, length fields of at most 4
bytes, no element may claim more bytes than there are); every defect is a `DerError`.
"""

from __future__ import annotations

MAX_DEPTH = 32
UNIVERSAL, CONTEXT = 0, 2
INTEGER, OCTET_STRING, NULL, OID, SEQUENCE, SET = 2, 4, 5, 6, 16, 17


class DerError(ValueError):
    """The bytes are not the BER structure expected."""


class Element:
    """One tag-length-value element; `content` is the raw value (for an indefinite length:
    the children's encodings, without the end-of-contents marker)."""

    __slots__ = ("cls", "constructed", "tag", "content", "depth")

    def __init__(self, cls: int, constructed: bool, tag: int, content: bytes, depth: int) -> None:
        self.cls, self.constructed, self.tag, self.content, self.depth = cls, constructed, tag, content, depth

    def is_(self, tag: int, cls: int = UNIVERSAL) -> bool:
        return self.tag == tag and self.cls == cls

    def children(self) -> list[Element]:
        if not self.constructed:
            raise DerError("expected a constructed element")
        return read_all(self.content, self.depth + 1)

    def child(self, index: int) -> Element:
        kids = self.children()
        if index >= len(kids):
            raise DerError("an element is missing")
        return kids[index]

    def integer(self) -> int:
        if not self.is_(INTEGER) or self.constructed or not self.content:
            raise DerError("expected an INTEGER")
        return int.from_bytes(self.content, "big", signed=True)

    def oid(self) -> str:
        if not self.is_(OID) or self.constructed or not self.content:
            raise DerError("expected an OBJECT IDENTIFIER")
        arcs, value = [], 0
        for byte in self.content:
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                arcs.append(value)
                value = 0
        if self.content[-1] & 0x80:
            raise DerError("truncated OBJECT IDENTIFIER")
        first = min(arcs[0] // 40, 2)
        return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])

    def octets(self) -> bytes:
        """The value of an OCTET STRING (or an implicitly tagged one), joining BER segments."""
        if not self.constructed:
            return self.content
        return b"".join(kid.octets() for kid in self.children())


def read(data: bytes, depth: int = 0) -> Element:
    """Exactly one element filling `data`."""
    element, end = _parse(data, 0, depth)
    if end != len(data):
        raise DerError("extra bytes after the element")
    return element


def read_all(data: bytes, depth: int = 0) -> list[Element]:
    out, pos = [], 0
    while pos < len(data):
        element, pos = _parse(data, pos, depth)
        out.append(element)
    return out


def _parse(data: bytes, pos: int, depth: int) -> tuple[Element, int]:
    if depth > MAX_DEPTH:
        raise DerError("nested too deeply")
    if pos + 2 > len(data):
        raise DerError("truncated element")
    first = data[pos]
    cls, constructed, tag = first >> 6, bool(first & 0x20), first & 0x1F
    pos += 1
    if tag == 0x1F:  # high tag number form; never more than 4 bytes here
        tag = 0
        for _ in range(4):
            if pos >= len(data):
                raise DerError("truncated tag")
            byte = data[pos]
            pos += 1
            tag = (tag << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        else:
            raise DerError("tag number too large")
    if pos >= len(data):
        raise DerError("truncated length")
    length_byte = data[pos]
    pos += 1
    if length_byte == 0x80:  # indefinite: children up to an end-of-contents marker
        if not constructed:
            raise DerError("indefinite length on a primitive element")
        start = pos
        while True:
            if data[pos:pos + 2] == b"\x00\x00":
                return Element(cls, constructed, tag, data[start:pos], depth), pos + 2
            _, pos = _parse(data, pos, depth + 1)
    if length_byte & 0x80:
        count = length_byte & 0x7F
        if count > 4 or pos + count > len(data):
            raise DerError("impossible length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    else:
        length = length_byte
    if pos + length > len(data):
        raise DerError("an element claims more bytes than there are")
    return Element(cls, constructed, tag, data[pos:pos + length], depth), pos + length
