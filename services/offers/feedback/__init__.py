"""Customers' ratings of their orders (0-10), from the shop's API and the card's page, and the
NPS figure the stats report over them."""
