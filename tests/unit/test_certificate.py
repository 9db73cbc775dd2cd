"""The end of a certificate's validity read from DER, and the problems redis_cluster_info derives from it."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.hashslot.redis.plugins.module_utils.certificate import CertificateFormatError, certificate_not_after
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_health import certificate_problem

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def certificate_der(not_after: datetime.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'node-1.example')])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(datetime.datetime(2026, 1, 1, tzinfo=UTC)).not_valid_after(not_after))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize('not_after', [
    datetime.datetime(2027, 3, 1, 8, 30, 5, tzinfo=UTC),   # UTCTime (before 2050)
    datetime.datetime(2051, 7, 9, 23, 59, 59, tzinfo=UTC),  # GeneralizedTime (2050 and later)
])
def test_end_of_validity_is_read_from_der(not_after):
    assert certificate_not_after(certificate_der(not_after)) == not_after


def test_truncated_or_foreign_bytes_are_refused():
    der = certificate_der(datetime.datetime(2027, 3, 1, tzinfo=UTC))
    with pytest.raises(CertificateFormatError):
        certificate_not_after(der[:40])
    with pytest.raises(CertificateFormatError):
        certificate_not_after(b'\x30\x03\x02\x01\x05')


def test_expiring_and_expired_certificates_are_problems_within_the_window():
    assert certificate_problem('10.0.0.1:6379', NOW + datetime.timedelta(days=31), NOW, 30) is None
    expiring = certificate_problem('10.0.0.1:6379', NOW + datetime.timedelta(days=12, hours=12), NOW, 30)
    assert expiring['kind'] == 'certificate_expiring' and expiring['node'] == '10.0.0.1:6379'
    assert expiring['expires'] == '2026-12-17T00:00:00Z'
    assert 'in 12.5 day(s)' in expiring['detail'] and 'redis_server_tls_renew_days' in expiring['detail']
    expired = certificate_problem('10.0.0.1:6379', NOW - datetime.timedelta(hours=1), NOW, 30)
    assert expired['kind'] == 'certificate_expired' and 'expired on 2026-12-04 11:00 UTC' in expired['detail']
    # 0 days: only a certificate that has ended is a problem.
    assert certificate_problem('10.0.0.1:6379', NOW + datetime.timedelta(hours=1), NOW, 0) is None
    assert certificate_problem('10.0.0.1:6379', NOW - datetime.timedelta(seconds=1), NOW, 0)['kind'] == 'certificate_expired'
