"""Shop events (``POST /v1/events``): the shop's marketing API for what its customers do
beyond orders (signed up, left a cart, watch a product, a trial ending). Stored once per
(merchant, event id) and handed to passes as ``shop.event`` for the journeys on the card."""
