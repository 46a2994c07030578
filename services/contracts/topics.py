"""The topics between services: the contract each publisher and consumer names.

- ``order.changed`` (orders -> passes): an applied status change of an order.
- ``card.updated`` (passes -> push): a card's new version, its pass type, the devices' push
  tokens and how to authenticate to APNs, so push reads no passes table.
- ``push_token.rejected`` (push -> passes): APNs refused a token for good; drop that registration.
"""

ORDER_CHANGED = "order.changed"
CARD_UPDATED = "card.updated"
PUSH_TOKEN_REJECTED = "push_token.rejected"  # noqa: S105  (a topic)
