"""A throw-away certificate authority and one loopback certificate, for servers and clients that speak only TLS."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from typing import Dict

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class LoopbackPki:
    """Paths of the CA certificate and key and of the 127.0.0.1 certificate and key (PEM)."""
    ca: str
    cert: str
    key: str
    ca_key: str

    def as_server_tls(self) -> Dict[str, str]:
        return {'ca': self.ca, 'cert': self.cert, 'key': self.key}

    def issue(self, days: float) -> bytes:
        """A new 127.0.0.1 certificate (PEM) for the same key, signed by the same CA, valid for `days` from now: what
        a renewal puts in place of `cert`."""
        pem = serialization.Encoding.PEM
        with open(self.ca, 'rb') as handle:
            ca_cert = x509.load_pem_x509_certificate(handle.read())
        with open(self.ca_key, 'rb') as handle:
            ca_key = serialization.load_pem_private_key(handle.read(), None)
        with open(self.key, 'rb') as handle:
            key = serialization.load_pem_private_key(handle.read(), None)
        return _loopback_certificate(ca_cert, ca_key, key, days).public_bytes(pem)


def _write(path: str, data: bytes, mode: int = 0o644) -> str:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), 'wb') as handle:
        handle.write(data)
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'hashslot.redis tests'),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _loopback_certificate(ca_cert: x509.Certificate, ca_key, key, days: float) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name('127.0.0.1')).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address('127.0.0.1')), x509.DNSName('localhost')]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def make_loopback_pki(directory: str, days: float = 400) -> LoopbackPki:
    """A private CA and one certificate it signs for 127.0.0.1 / localhost, good for both ends of a connection.

    The servers present it to clients and to each other (cluster bus, replication), and the modules present it as
    their client certificate, so its extended key usage is serverAuth and clientAuth. It is valid for `days` (more than
    the 30 days within which redis_cluster_info reports a certificate as expiring).
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name('hashslot test CA')
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days + 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    return LoopbackPki(
        ca=_write(os.path.join(directory, 'ca.crt'), ca_cert.public_bytes(pem)),
        cert=_write(os.path.join(directory, 'node.crt'), _loopback_certificate(ca_cert, ca_key, key, days).public_bytes(pem)),
        key=_write(os.path.join(directory, 'node.key'), key.private_bytes(pem, pkcs8, serialization.NoEncryption()), 0o600),
        ca_key=_write(os.path.join(directory, 'ca.key'), ca_key.private_bytes(pem, pkcs8, serialization.NoEncryption()), 0o600),
    )
