"""An official account's own server, as the relay and downstream tests need it (standard library
only). It checks every push as a real one would, on its own: the signature over token, timestamp
and nonce, and in safe mode the msg_signature over the Encrypt field, which it then decrypts.
It records the raw bytes of each push and answers with a passive text reply (encrypted in safe
mode) naming what it got.

Behind wxlogin (relay): run it as WXLOGIN_UPSTREAM_URL; --delay and --status make it slow or
failing. In front of wxlogin (downstream, --forward-prefix): it receives the pushes and sends the
ones whose EventKey carries wxlogin's scene prefix on, raw, to the URL POSTed to /_test/wxlogin,
returning wxlogin's answer.

GET /_test/seen lists what it received. It prints `listening on http://HOST:PORT` when ready."""

import argparse
import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from wechat_crypto import MessageCrypto, sign

REPLY_TYPE = "application/xml; charset=utf-8"


def field(xml, name):
    node = ET.fromstring(xml).find(name)
    return "" if node is None or node.text is None else node.text


class Account:
    def __init__(self, args):
        self.args = args
        self.crypto = MessageCrypto(args.aes_key, args.appid) if args.aes_key else None
        self.seen = []
        self.wxlogin = None
        self.lock = threading.Lock()

    def open(self, query, body):
        """The push's plaintext XML, or None when a signature does not check."""
        one = lambda name: query.get(name, [""])[0]
        token, timestamp, nonce = self.args.token, one("timestamp"), one("nonce")
        if sign(token, timestamp, nonce) != one("signature"):
            return None
        if one("encrypt_type") != "aes":
            return body
        encrypt = field(body, "Encrypt")
        if self.crypto is None or sign(token, timestamp, nonce, encrypt) != one("msg_signature"):
            return None
        return self.crypto.decrypt(encrypt)

    def reply(self, plain, encrypted):
        about = field(plain, "Event") or field(plain, "Content") or field(plain, "MsgType")
        xml = (
            "<xml><ToUserName><![CDATA[%s]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"
            "<CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            "<Content><![CDATA[the account's server got: %s]]></Content></xml>"
            % (field(plain, "FromUserName"), field(plain, "ToUserName"), time.time(), about)
        ).encode()
        if not encrypted:
            return xml
        encrypt = self.crypto.encrypt(xml)
        timestamp, nonce = str(int(time.time())), "424242"
        signature = sign(self.args.token, timestamp, nonce, encrypt)
        return (
            "<xml><Encrypt><![CDATA[%s]]></Encrypt><MsgSignature><![CDATA[%s]]></MsgSignature>"
            "<TimeStamp>%s</TimeStamp><Nonce><![CDATA[%s]]></Nonce></xml>"
            % (encrypt, signature, timestamp, nonce)
        ).encode()

    def is_login(self, plain):
        key = field(plain, "EventKey")
        key = key[len("qrscene_") :] if key.startswith("qrscene_") else key
        return field(plain, "MsgType") == "event" and key.startswith(self.args.forward_prefix)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, content_type, body):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        account = self.server.account
        if self.path == "/_test/seen":
            with account.lock:
                seen = json.dumps(account.seen).encode()
            return self.answer(200, "application/json", seen)
        self.answer(404, "text/plain", b"not found")

    def do_POST(self):
        account, args = self.server.account, self.server.account.args
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/_test/wxlogin":
            account.wxlogin = body.decode()
            return self.answer(204, None, b"")
        target = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(target.query)
        plain = account.open(query, body)
        record = {
            "method": self.command,
            "path": target.path,
            "query": target.query,
            "content_type": self.headers.get("Content-Type"),
            "body": base64.b64encode(body).decode(),
            "signature_ok": plain is not None,
        }
        if plain is None:
            record["answer"] = "refused"
            with account.lock:
                account.seen.append(record)
            return self.answer(403, "text/plain", b"bad signature")
        record["plaintext"] = plain.decode()
        if args.forward_prefix and account.is_login(plain):
            status, content_type, answer = forward(account.wxlogin + "?" + target.query, body, self.headers.get("Content-Type"))
            record["forwarded"] = True
        else:
            time.sleep(args.delay)
            status, content_type = args.status, REPLY_TYPE
            answer = account.reply(plain, "encrypt_type" in query)
        record.update(status=status, answer_content_type=content_type, answer=base64.b64encode(answer).decode())
        with account.lock:
            account.seen.append(record)
        self.answer(status, content_type, answer)


def forward(url, body, content_type):
    """The raw push to wxlogin's /wechat, and its answer as it came."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=4) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", required=True)
    parser.add_argument("--aes-key")
    parser.add_argument("--appid", default="")
    parser.add_argument("--delay", type=float, default=0, help="seconds to wait before answering")
    parser.add_argument("--status", type=int, default=200, help="the HTTP status of its answers")
    parser.add_argument("--forward-prefix", default="", help="send pushes with this scene prefix on to wxlogin")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.account = Account(args)
    print("listening on http://127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
