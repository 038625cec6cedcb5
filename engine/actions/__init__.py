"""Requests a call makes to the business's own systems (DESIGN.md section 8.5).

`hosts` decides where a request may go (`HTTP_ALLOW_HOSTS`), `secrets` puts `${NAME}` values in
at the last moment and keeps them out of everything recorded, and `http` sends one request and
reads its JSON answer within a deadline, refusing what the policy refuses at every hop.
"""
