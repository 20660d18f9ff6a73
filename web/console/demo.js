// N simulated players of one account, each running the player SDK against
// this server: the limit, eviction and "stop playback on the TV" at work.

import { LimitReachedError, StreamguardClient } from './sdk.js';

const DEVICES = ['tv', 'phone', 'tablet', 'laptop', 'console', 'car', 'watch', 'desktop', 'projector', 'kitchen', 'office', 'guest'];
const TITLES = ['movie-42', 'series-7-e3', 'live-match', 'docu-9', 'kids-12', 'concert-5'];
const $ = (selector) => document.querySelector(selector);

const players = [];
let account;

function log(message) {
  const line = `${new Date().toLocaleTimeString()}  ${message}\n`;
  $('#log').textContent = line + $('#log').textContent;
}

class Player {
  constructor(index) {
    this.device = DEVICES[index % DEVICES.length] + (index >= DEVICES.length ? `-${index}` : '');
    this.content = TITLES[index % TITLES.length];
    this.client = new StreamguardClient({ baseUrl: location.origin, userId: account });
    this.session = undefined;
    this.card = document.createElement('div');
    this.card.className = 'card player';
    this.card.dataset.device = this.device;
    this.card.innerHTML = `
      <div class="row"><h3></h3><span class="muted content"></span></div>
      <div class="screen">idle</div>
      <div class="row">
        <button class="play">Play</button>
        <button class="stop secondary" disabled>Stop</button>
      </div>
      <div class="offer"></div>`;
    this.card.querySelector('h3').textContent = this.device;
    this.card.querySelector('.content').textContent = this.content;
    this.card.querySelector('.play').addEventListener('click', () => this.play());
    this.card.querySelector('.stop').addEventListener('click', () => this.stop());
    this.set('idle', 'idle');
  }

  set(state, text) {
    this.card.dataset.state = state;
    this.card.querySelector('.screen').textContent = text;
    this.card.querySelector('.play').disabled = state === 'playing';
    this.card.querySelector('.stop').disabled = state !== 'playing';
    if (state !== 'refused') this.card.querySelector('.offer').replaceChildren();
  }

  async play(terminate = []) {
    try {
      const session = await this.client.start({ deviceId: this.device, contentId: this.content, terminate });
      this.attach(session);
      const ended = [...session.evicted, ...session.replaced];
      log(`${this.device}: playing (stream ${session.id})${ended.length ? `; ended ${ended.join(', ')}` : ''}`);
    } catch (error) {
      if (error instanceof LimitReachedError) {
        this.refuse(error);
      } else {
        this.set('refused', `error: ${error.message}`);
        log(`${this.device}: ${error.message}`);
      }
    }
  }

  attach(session) {
    this.session = session;
    const show = () => {
      const left = Math.max(0, (Date.parse(session.stream.expires_at) - Date.now()) / 1000);
      this.set('playing', `▶ ${this.content} · lease ${left.toFixed(0)} s`);
    };
    show();
    const timer = setInterval(() => this.session === session && show(), 1000);
    session.on('heartbeat', show);
    session.on('retry', (r) => log(`${this.device}: heartbeat got ${r.status || 'no answer'}, retrying in ${(r.delayMs / 1000).toFixed(1)} s`));
    session.on('ended', ({ reason }) => {
      clearInterval(timer);
      if (this.session !== session) return;
      this.session = undefined;
      this.set(reason === 'stopped' ? 'idle' : 'ended', reason === 'stopped' ? 'stopped' : `■ ended: ${reason}`);
      if (reason !== 'stopped') log(`${this.device}: the server ended playback (${reason})`);
    });
  }

  refuse(error) {
    this.set('refused', `limit reached: ${error.active} of ${error.limit} streams`);
    log(`${this.device}: refused, ${error.active} of ${error.limit} in use (${error.streams.map((s) => s.device_id ?? s.id).join(', ')})`);
    const offer = this.card.querySelector('.offer');
    offer.replaceChildren(
      ...error.streams.map((s) => {
        const button = document.createElement('button');
        button.textContent = `Stop playback on ${s.device_id ?? s.id}`;
        button.dataset.terminate = s.id;
        button.addEventListener('click', () => {
          log(`${this.device}: watch here, stop ${s.device_id ?? s.id}`);
          this.play([s.id]);
        });
        return button;
      }),
    );
  }

  async stop() {
    const session = this.session;
    if (!session) return;
    try {
      await session.stop();
      log(`${this.device}: stopped`);
    } catch (error) {
      log(`${this.device}: stop failed (${error.message}); the lease will run out`);
    }
  }

  remove() {
    this.client.close();
    this.card.remove();
  }
}

/** Makes the players; sets the account's limit when asked to (needs the admin token). */
async function setUp({ setLimit }) {
  for (const p of players.splice(0)) {
    await p.stop().catch(() => {});
    p.remove();
  }
  account = $('#account').value.trim();
  sessionStorage.setItem('streamguard.demoAccount', account);
  $('#account-link').href = `./#accounts?user=${encodeURIComponent(account)}`;
  const token = sessionStorage.getItem('streamguard.adminToken');
  if (!setLimit) {
    $('#setup-note').textContent = 'Press Set up to give this account the limit above.';
  } else if (token) {
    const response = await fetch(`/admin/users/${encodeURIComponent(account)}/limit`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ limit: Number($('#limit').value) }),
    }).catch((error) => ({ ok: false, status: `no answer: ${error.message}` }));
    $('#setup-note').textContent = response.ok
      ? `Limit of ${account} set to ${$('#limit').value}.`
      : `Could not set the limit (HTTP ${response.status}); the server's applies.`;
  } else {
    $('#setup-note').textContent = 'Sign in to the console to set the limit; the server default applies.';
  }
  const count = Math.max(1, Math.min(12, Number($('#count').value) || 4));
  for (let i = 0; i < count; i++) {
    const player = new Player(i);
    players.push(player);
    $('#players').append(player.card);
  }
  log(`account ${account}: ${count} players`);
}

$('#setup').addEventListener('submit', (event) => {
  event.preventDefault();
  setUp({ setLimit: true });
});
$('#play-all').addEventListener('click', async () => {
  for (const p of players) if (!p.session) await p.play();
});
$('#stop-all').addEventListener('click', async () => {
  for (const p of players) await p.stop();
});

$('#account').value =
  sessionStorage.getItem('streamguard.demoAccount') ?? `demo-${Math.random().toString(36).slice(2, 8)}`;
setUp({ setLimit: false });
