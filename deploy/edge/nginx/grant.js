// streamguard grant check for nginx (njs 0.7+, WebCrypto).
//
// Runs in the auth_request subrequest of every protected request:
//   204 → nginx serves the file; 401/403 → nginx refuses it, and the short
//   reason is left in $edge_reason for the Streamguard-Reason header.
//
// Offline: ES256 signature against the P-256 public key that the grant's
// `kid` names in $edge_keys (a directory of <kid>.pem files written by
// `streamguard edge-keys`), `exp` against the clock, `cid` against the
// content id taken from the path. The key file is read on each check, so a
// rotation needs no reload. Ed25519 (EdDSA) grants are refused: njs's
// WebCrypto has no Ed25519.
//
// Online (when $edge_verify_online is "1"): after the offline check passes,
// one cached subrequest to streamguard's GET /edge/verify says whether the
// grant's stream is still live. When streamguard renewed the lease
// (--edge-renew-every), the renewed grant goes back to the player as the
// streamguard_grant cookie.

import fs from 'fs';

const KID = /^[A-Za-z0-9_-]{1,128}$/;

function refuse(r, status, reason) {
    r.variables.edge_reason = reason;
    r.return(status);
}

function decode(part) {
    return Buffer.from(part, 'base64url');
}

// The grant: ?grant=, the Streamguard-Grant header, or the
// streamguard_grant cookie (in that order). The main request's values were
// copied into variables before the subrequest ran.
function grantOf(r) {
    const v = r.variables;
    return v.edge_arg_grant || v.http_streamguard_grant || v.cookie_streamguard_grant || '';
}

function spki(pem) {
    const body = pem
        .toString()
        .replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '')
        .replace(/\s+/g, '');
    return Buffer.from(body, 'base64');
}

async function offline(r, token, content) {
    const parts = token.split('.');
    if (parts.length !== 3 || token.length > 2048) {
        return 'invalid';
    }
    let header;
    let claims;
    try {
        header = JSON.parse(decode(parts[0]).toString());
        claims = JSON.parse(decode(parts[1]).toString());
    } catch (e) {
        return 'invalid';
    }
    if (header.alg !== 'ES256' || typeof header.kid !== 'string' || !KID.test(header.kid)) {
        return 'invalid';
    }
    let pem;
    try {
        pem = fs.readFileSync(r.variables.edge_keys + '/' + header.kid + '.pem');
    } catch (e) {
        return 'invalid'; // not a key we publish (or no longer)
    }
    const key = await crypto.subtle.importKey(
        'spki', spki(pem), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    const signed = parts[0] + '.' + parts[1];
    let ok = false;
    try {
        ok = await crypto.subtle.verify(
            { name: 'ECDSA', hash: 'SHA-256' }, key, decode(parts[2]), signed);
    } catch (e) {
        ok = false; // e.g. a signature of the wrong length
    }
    if (!ok) {
        return 'invalid';
    }
    if (typeof claims.exp !== 'number' || Date.now() >= claims.exp * 1000) {
        return 'expired';
    }
    // A grant without cid opens no content.
    if (typeof claims.cid !== 'string' || claims.cid !== content) {
        return 'content-mismatch';
    }
    return null;
}

async function check(r) {
    try {
        const token = grantOf(r);
        if (token === '') {
            return refuse(r, 401, 'missing');
        }
        const content = r.variables.edge_content || '';
        const reason = await offline(r, token, content);
        if (reason !== null) {
            return refuse(r, 403, reason);
        }
        if (r.variables.edge_verify_online === '1') {
            const args = 'grant=' + encodeURIComponent(token)
                + '&content_id=' + encodeURIComponent(content);
            const reply = await r.subrequest('/_edge_online', { args: args });
            if (reply.status === 204) {
                // streamguard --edge-renew-every: the lease was renewed; the
                // player gets the new grant as its cookie.
                const renewed = reply.headersOut['Streamguard-Grant'];
                if (renewed) {
                    r.variables.edge_new_grant = renewed;
                }
                return r.return(204);
            }
            if (reply.status === 401 || reply.status === 403) {
                return refuse(r, 403, reply.headersOut['Streamguard-Reason'] || 'refused');
            }
            // streamguard unreachable or failing: closed, like a bad grant.
            return refuse(r, 403, 'unverified');
        }
        return r.return(204);
    } catch (e) {
        r.error('grant check failed: ' + e);
        return refuse(r, 403, 'invalid');
    }
}

export default { check };
