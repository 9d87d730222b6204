"""A paste filter for the lab's nova-api: run after ``noauth2`` (no Keystone).

noauth2 builds a request context from ``X-Auth-Token: user:project`` but leaves its
``auth_token`` empty, and Nova's own calls with the user's context (to Glance, for
instance) then fail with ``AuthorizationFailure: No valid authentication is
available``. This copies the header into the context, as Keystone's middleware would.
"""


class CopyToken:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        context = environ.get("nova.context")
        token = environ.get("HTTP_X_AUTH_TOKEN")
        if context is not None and token and not context.auth_token:
            context.auth_token = token
        return self.app(environ, start_response)


def filter_factory(global_conf, **local_conf):  # pylint: disable=unused-argument
    return CopyToken
