"""Direct sales: an organization's own storefront, paid by card through Stripe Checkout, as one more channel.

The channel plugin (``storefront``, in ``plugin.py``) publishes nothing remote; its orders come from Stripe's events
(``events.py``), ingested by the same order pipeline as any marketplace's. Kept free of imports here: the order
pipeline imports ``payments.holds``, and this package's other modules import the order pipeline.
"""
