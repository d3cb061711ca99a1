"""WeChat's callback signatures and safe-mode (AES-256-CBC) envelopes, on the standard library
alone: the account's server in the relay tests checks and opens what wxlogin passes on with code
that shares nothing with wxlogin's."""

import base64
import hashlib
import os
import struct


def sign(*parts):
    """hex(sha1(concat(sorted(parts)))): WeChat's signature."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _xtime(a):
    a <<= 1
    return (a ^ 0x11B) if a & 0x100 else a


def _mul(a, b):
    product = 0
    while b:
        if b & 1:
            product ^= a
        a, b = _xtime(a), b >> 1
    return product


def _sboxes():
    sbox, inverse = [0] * 256, [0] * 256
    for x in range(256):
        inv = next((y for y in range(1, 256) if _mul(x, y) == 1), 0)
        s = inv
        for shift in range(1, 5):
            s ^= ((inv << shift) | (inv >> (8 - shift))) & 0xFF
        s ^= 0x63
        sbox[x], inverse[s] = s, x
    return sbox, inverse


SBOX, INV_SBOX = _sboxes()


def _round_keys(key):
    nk = len(key) // 4
    rounds = nk + 6
    words = [list(key[4 * i : 4 * i + 4]) for i in range(nk)]
    rcon = 1
    for i in range(nk, 4 * (rounds + 1)):
        t = list(words[i - 1])
        if i % nk == 0:
            t = [SBOX[b] for b in t[1:] + t[:1]]
            t[0] ^= rcon
            rcon = _xtime(rcon)
        elif nk > 6 and i % nk == 4:
            t = [SBOX[b] for b in t]
        words.append([a ^ b for a, b in zip(words[i - nk], t)])
    return [sum(words[4 * r : 4 * r + 4], []) for r in range(rounds + 1)]


def _shift(s, direction):
    return [s[r + 4 * ((c + direction * r) % 4)] for c in range(4) for r in range(4)]


def _mix(s, m):
    out = []
    for c in range(4):
        col = s[4 * c : 4 * c + 4]
        for r in range(4):
            out.append(
                _mul(m[0], col[r]) ^ _mul(m[1], col[(r + 1) % 4]) ^ _mul(m[2], col[(r + 2) % 4]) ^ _mul(m[3], col[(r + 3) % 4])
            )
    return out


def _xor(a, b):
    return [x ^ y for x, y in zip(a, b)]


def encrypt_block(keys, block):
    s = _xor(block, keys[0])
    for r in range(1, len(keys)):
        s = _shift([SBOX[b] for b in s], 1)
        if r != len(keys) - 1:
            s = _mix(s, (2, 3, 1, 1))
        s = _xor(s, keys[r])
    return s


def decrypt_block(keys, block):
    s = _xor(block, keys[-1])
    for r in range(len(keys) - 2, -1, -1):
        s = [INV_SBOX[b] for b in _shift(s, -1)]
        s = _xor(s, keys[r])
        if r != 0:
            s = _mix(s, (14, 11, 13, 9))
    return s


class MessageCrypto:
    """random(16) | len(4, big-endian) | message | appid, PKCS#7-padded to 32 bytes, AES-256-CBC
    under the 43-character EncodingAESKey (base64) with the key's first 16 bytes as IV."""

    def __init__(self, encoding_aes_key, appid):
        self.key = base64.b64decode(encoding_aes_key + "=")
        self.keys = _round_keys(self.key)
        self.appid = appid.encode()

    def decrypt(self, encrypt):
        data = base64.b64decode(encrypt)
        previous, plain = list(self.key[:16]), []
        for i in range(0, len(data), 16):
            block = list(data[i : i + 16])
            plain += _xor(decrypt_block(self.keys, block), previous)
            previous = block
        plain = bytes(plain)
        plain = plain[: -plain[-1]]
        (length,) = struct.unpack(">I", plain[16:20])
        message, appid = plain[20 : 20 + length], plain[20 + length :]
        if appid != self.appid:
            raise ValueError("the message is for another AppID")
        return message

    def encrypt(self, message):
        plain = os.urandom(16) + struct.pack(">I", len(message)) + message + self.appid
        pad = 32 - len(plain) % 32
        plain += bytes([pad]) * pad
        previous, out = list(self.key[:16]), []
        for i in range(0, len(plain), 16):
            previous = encrypt_block(self.keys, _xor(list(plain[i : i + 16]), previous))
            out += previous
        return base64.b64encode(bytes(out)).decode()


if __name__ == "__main__":
    # FIPS-197 C.3 (AES-256).
    keys = _round_keys(bytes(range(32)))
    block = list(bytes.fromhex("00112233445566778899aabbccddeeff"))
    assert bytes(encrypt_block(keys, block)).hex() == "8ea2b7ca516745bfeafc49904b496089"
    assert decrypt_block(keys, encrypt_block(keys, block)) == block
    crypto = MessageCrypto("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx1")
    assert crypto.decrypt(crypto.encrypt(b"<xml>hi</xml>")) == b"<xml>hi</xml>"
    print("ok")
