"""What the services agree on, and nothing else: pure code, no tables, no I/O.

The message each service publishes to another (``messages``), an order's statuses as every
service names them (``orders``), and a card's derived identity and links (``cards``), which the
orders API answers a shop with before the passes service has made the card.
"""
