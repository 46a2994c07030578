"""Apple Wallet Orders: the order itself in Wallet, beside the card.

``document`` says what a version's order.json and order.strings hold, ``package`` signs and
zips them once per version, ``tracking`` keeps each order's Wallet order as ``order.changed``
moves it and announces its versions to push, ``webservice`` is Apple's Orders web service
under ``/wallet-orders/v1`` with the customer's download, and ``settings`` switches a merchant
on with its Order Type ID certificate.
"""
