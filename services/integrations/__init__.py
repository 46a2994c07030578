"""Clients for the outside services passpost talks to: pure code (no tables), any service may
use them."""
