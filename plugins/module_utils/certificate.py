# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The expiry of the certificate a node serves, read from its DER bytes.

The modules run on hosts that may lack the cryptography package, and Python's ssl module decodes a peer's
certificate only when it verified it; the few DER fields up to the validity period are read here instead.
"""

from __future__ import annotations

import datetime
from typing import Tuple

_UTC_TIME, _GENERALIZED_TIME, _VERSION = 0x17, 0x18, 0xA0


class CertificateFormatError(ValueError):
    pass


def _element(der: bytes, offset: int) -> Tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `offset`."""
    if offset + 2 > len(der):
        raise CertificateFormatError('truncated certificate')
    tag, length, start = der[offset], der[offset + 1], offset + 2
    if length & 0x80:
        size = length & 0x7F
        length, start = int.from_bytes(der[start:start + size], 'big'), start + size
    if start + length > len(der):
        raise CertificateFormatError('truncated certificate')
    return tag, start, start + length


def certificate_not_after(der: bytes) -> datetime.datetime:
    """The end of an X.509 certificate's validity period (UTC).

    Certificate = SEQUENCE {tbsCertificate, ...}; tbsCertificate = SEQUENCE {[0] version (optional), serialNumber,
    signature, issuer, validity = SEQUENCE {notBefore, notAfter}, ...}.
    """
    _tag, certificate, _end = _element(der, 0)
    _tag, field, _end = _element(der, certificate)
    tag, _start, end = _element(der, field)
    if tag == _VERSION:
        field = end
    for _skipped in ('serialNumber', 'signature', 'issuer'):
        _tag, _start, field = _element(der, field)
    _tag, validity, _end = _element(der, field)
    _tag, _start, not_after = _element(der, validity)
    tag, start, end = _element(der, not_after)
    formats = {_UTC_TIME: '%y%m%d%H%M%SZ', _GENERALIZED_TIME: '%Y%m%d%H%M%SZ'}
    if tag not in formats:
        raise CertificateFormatError(f'unexpected element (tag {tag:#x}) where the validity period ends')
    text = der[start:end].decode('ascii')
    return datetime.datetime.strptime(text, formats[tag]).replace(tzinfo=datetime.timezone.utc)
