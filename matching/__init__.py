"""Domain core of the VoP responder: names, matching policy, account index. No HTTP here."""
