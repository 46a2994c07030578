"""Journeys on the card: messages triggered by what the customer did (signed up, left a cart,
a watched product got cheaper, a trial is ending, an order was delivered), each a step that is
due at a time, goes through the one notification policy and lands in the card's marketing
slot. ``engine.py`` runs every journey; each journey's module says what triggers it, when it
is due, what cancels it and what it says."""
