"""HTTP edge of the VoP responder: app factory, routes, wire schemas, errors, CLI."""
