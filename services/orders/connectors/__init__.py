"""Platform connectors: Shopify, WooCommerce and Shoptet webhooks as order events.

A connector is one more intake of the orders service: a verified webhook becomes the same
``OrderEventIn`` the orders API takes and goes through ``orders.service.ingest_events``.
"""
