"""A local stand-in for Apple's push service (HTTP/2 over TLS), for development, tests and
benchmarks: `make run`, ``passpost apns-mock`` and ``bench/`` push to it. Not part of the push
service, which talks to it exactly as it talks to Apple."""

from services.apns_standin.server import ApnsStandin, main

__all__ = ["ApnsStandin", "main"]
