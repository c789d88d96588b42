"""Security and compliance layer: authentication, authorisation, abuse limits and the audit trail.

``SecurityGate`` (gate.py) is the one object the HTTP routes talk to; every other module here is one
concept it is built from (JWKS, token verification, dev keys, XFCC, rate limit, enumeration guard,
pseudonymisation, audit trail, settings).
"""
