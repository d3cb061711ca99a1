"""A Flask app that signs users in with wxlogin through Authlib's Flask client, with Authlib's
defaults: discovery, `state` and `nonce` in Flask's session cookie, the ID token validated by
`authorize_access_token` (signature through the JWKS, iss, aud, exp, nonce), userinfo by GET with
the Bearer header. Settings (stdin): {"issuer", "client_id", "client_secret", "auth" (absent:
Authlib's default, client_secret_basic)}.

  GET /login     302 to wxlogin's authorization endpoint
  GET /callback  {"claims": the ID token's, "userinfo": ...}
"""

from authlib.integrations.flask_client import OAuth
from flask import Flask, jsonify, url_for

from serve import serve

app = Flask(__name__)
app.secret_key = "authlib-test-app-secret-0123456789"
oauth = OAuth(app)
settings = {}


def configure(given, origin):
    settings.update(given, origin=origin)
    client_kwargs = {"scope": "openid phone"}
    if "auth" in given:
        client_kwargs["token_endpoint_auth_method"] = given["auth"]
    oauth.register(
        "wxlogin",
        client_id=given["client_id"],
        client_secret=given["client_secret"],
        server_metadata_url=f"{given['issuer']}/.well-known/openid-configuration",
        client_kwargs=client_kwargs,
    )


@app.get("/login")
def login():
    return oauth.wxlogin.authorize_redirect(f"{settings['origin']}/callback")


@app.get("/callback")
def callback():
    token = oauth.wxlogin.authorize_access_token()
    return jsonify(claims=token["userinfo"], userinfo=oauth.wxlogin.userinfo(token=token))


@app.errorhandler(Exception)
def failed(error):
    return jsonify(error=type(error).__name__, error_description=str(error)), 400


if __name__ == "__main__":
    serve(app, configure)
