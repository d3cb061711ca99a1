"""A Flask app that signs users in with wxlogin through pyoidc (`oic`), with pyoidc's defaults:
provider discovery, `client_secret_basic` at the token endpoint (quote_plus-encoded, as RFC 6749
§2.3.1 says), the ID token verified through the JWKS, and userinfo by POST with the token in the
form body (RFC 6750 §2.2). Settings (stdin): {"issuer", "client_id", "client_secret"}.

  GET /login     302 to wxlogin's authorization endpoint
  GET /callback  {"claims": the ID token's, "userinfo": ... or "userinfo_error": what failed}
"""

from flask import Flask, jsonify, redirect, request
from oic import rndstr
from oic.oic import Client
from oic.oic.message import AuthorizationResponse, RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD

from serve import serve

app = Flask(__name__)
client = Client(client_authn_method=CLIENT_AUTHN_METHOD)
# One user at a time: the nonce each login started with, by its state.
nonces = {}


def configure(settings, origin):
    client.provider_config(settings["issuer"])
    client.store_registration_info(
        RegistrationResponse(
            client_id=settings["client_id"],
            client_secret=settings["client_secret"],
            redirect_uris=[f"{origin}/callback"],
        )
    )
    client.redirect_uris = [f"{origin}/callback"]


@app.get("/login")
def login():
    state, nonce = rndstr(), rndstr()
    nonces[state] = nonce
    authorization = client.construct_AuthorizationRequest(
        request_args={
            "client_id": client.client_id,
            "response_type": "code",
            "scope": ["openid", "phone"],
            "redirect_uri": client.redirect_uris[0],
            "state": state,
            "nonce": nonce,
        }
    )
    return redirect(authorization.request(client.authorization_endpoint))


@app.get("/callback")
def callback():
    answer = client.parse_response(
        AuthorizationResponse, info=request.query_string.decode(), sformat="urlencoded"
    )
    state = answer["state"]
    tokens = client.do_access_token_request(
        state=state,
        request_args={"code": answer["code"]},
        authn_method="client_secret_basic",
    )
    claims = tokens["id_token"].to_dict()
    # The RP's own replay check: the nonce this login sent.
    if claims.get("nonce") != nonces.pop(state, None):
        raise ValueError("the ID token's nonce is not this login's")
    try:
        return jsonify(claims=claims, userinfo=client.do_user_info_request(state=state).to_dict())
    except Exception as error:
        return jsonify(claims=claims, userinfo_error=f"{type(error).__name__}: {error}")


@app.errorhandler(Exception)
def failed(error):
    return jsonify(error=type(error).__name__, error_description=str(error)), 400


if __name__ == "__main__":
    serve(app, configure)
