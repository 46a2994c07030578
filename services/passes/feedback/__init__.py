"""Feedback on the card: the customer rates their latest delivered order on the card's page
(a form, no JavaScript), offers keeps the rating (``feedback.given``), and the card's back
shows the follow-up the score calls for, whether the rating came from the page or the shop's
API (``feedback.recorded``)."""
