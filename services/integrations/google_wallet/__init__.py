"""Google Wallet's REST API (walletobjects v1): service account tokens (``auth``), the client
(``client``), Loyalty class and object bodies (``objects``), the save link's JWT (``jwt``) and
the verification of Google's signed callbacks (``callbacks``)."""
