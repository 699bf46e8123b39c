"""Stage `local`'s stand-ins for AWS, on a developer's machine and in tests: the SQLite
store, the in-process bus, the outbox and the payload folder. Never in a deployment
package; the runtime opens them only in stage `local`, which never runs in Lambda."""
