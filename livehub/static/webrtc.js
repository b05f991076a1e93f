// WebRTC helpers shared by the player (WHEP) and the publisher (WHIP).

/**
 * Wait until the peer connection has gathered its candidates (at most `ms`), so that the offer
 * sent to a WHIP/WHEP endpoint carries them: those endpoints take one offer and no trickle.
 */
export function iceGathered(pc, ms = 2000) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => { pc.removeEventListener('icegatheringstatechange', done); resolve(); }, ms);
    pc.addEventListener('icegatheringstatechange', done);
  });
}

/**
 * POST the local offer to a WHIP/WHEP endpoint; answer {sdp, location} (the resource URL to
 * DELETE when done, or null). Errors say what went wrong in words.
 */
export async function exchangeSdp(url, pc) {
  let res;
  try {
    res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
  } catch (err) {
    throw new Error(`cannot reach SRS at ${new URL(url).host} (${err.message})`);
  }
  const sdp = await res.text();
  if (res.status !== 201 && res.status !== 200) throw new Error(`SRS answered HTTP ${res.status} ${sdp.trim().slice(0, 120)}`);
  const loc = res.headers.get('Location');
  return { sdp, location: loc ? new URL(loc, url).href : null };
}

/** Tell the endpoint we are done with a WHIP/WHEP resource (best effort). */
export function deleteResource(location) {
  if (location) fetch(location, { method: 'DELETE' }).catch(() => {});
}
