// Drives the emulator's REST API with the Firebase JS SDK's
// firebase/firestore/lite (which speaks REST only) and prints what it read
// as JSON. Environment: WEB_DIR (the web workspace holding node_modules),
// FIRESTORE_HOST (host:port) and PROJECT.
'use strict';
const { createRequire } = require('node:module');
const path = require('node:path');

const webRequire = createRequire(path.join(process.env.WEB_DIR, 'package.json'));
const { initializeApp } = webRequire('firebase/app');
const fs = webRequire('firebase/firestore/lite');

async function main() {
  const [host, port] = process.env.FIRESTORE_HOST.split(':');
  const app = initializeApp({ projectId: process.env.PROJECT, apiKey: 'emulator-key' });
  const db = fs.getFirestore(app);
  // mockUserToken 'owner' sends "Authorization: Bearer owner", the
  // emulators' admin token.
  fs.connectFirestoreEmulator(db, host, Number(port), { mockUserToken: 'owner' });
  const out = {};
  const players = fs.collection(db, 'players');

  await fs.setDoc(fs.doc(players, 'p1'), { name: 'ann', score: 10, tags: ['a', 'b'], nested: { x: 1.5 }, at: fs.Timestamp.fromMillis(1700000000123) });
  await fs.setDoc(fs.doc(players, 'p2'), { name: 'bob', score: 20 });
  await fs.setDoc(fs.doc(players, 'p3'), { name: 'cy', score: 5 });
  await fs.setDoc(fs.doc(players, 'p3'), { team: 'red' }, { merge: true });

  const p1 = await fs.getDoc(fs.doc(players, 'p1'));
  out.get = { exists: p1.exists(), name: p1.get('name'), score: p1.get('score'), tags: p1.get('tags'), x: p1.get('nested.x'), atMillis: p1.get('at').toMillis() };
  out.missing = (await fs.getDoc(fs.doc(players, 'nobody'))).exists();

  const q = fs.query(players, fs.where('score', '>=', 10), fs.orderBy('score', 'desc'));
  out.query = (await fs.getDocs(q)).docs.map((d) => d.id);
  out.limited = (await fs.getDocs(fs.query(players, fs.orderBy('name'), fs.startAfter('ann'), fs.limit(1)))).docs.map((d) => d.id);

  out.transaction = await fs.runTransaction(db, async (tx) => {
    const snap = await tx.get(fs.doc(players, 'p1'));
    const score = snap.get('score') + 1;
    tx.update(fs.doc(players, 'p1'), { score });
    tx.delete(fs.doc(players, 'p3'));
    return score;
  });

  await fs.updateDoc(fs.doc(players, 'p2'), { score: fs.increment(5), tags: fs.arrayUnion('z') });
  const batch = fs.writeBatch(db);
  batch.set(fs.doc(players, 'p4'), { name: 'dee', score: 1 });
  batch.set(fs.doc(db, 'players/p4/items/i1'), { n: 1 });
  await batch.commit();

  out.count = (await fs.getCount(players)).data().count;
  const agg = await fs.getAggregate(players, { total: fs.sum('score'), mean: fs.average('score') });
  out.sum = agg.data().total;
  out.average = agg.data().mean;
  out.subcollection = (await fs.getDocs(fs.collection(db, 'players/p4/items'))).docs.map((d) => d.id);
  out.group = (await fs.getDocs(fs.collectionGroup(db, 'items'))).docs.map((d) => d.ref.path);

  try {
    await fs.updateDoc(fs.doc(players, 'nobody'), { score: 1 });
    out.updateMissing = 'no error';
  } catch (e) {
    out.updateMissing = e.code;
  }
  await fs.deleteDoc(fs.doc(players, 'p4'));
  out.afterDelete = (await fs.getDocs(players)).docs.map((d) => d.id);
  process.stdout.write(JSON.stringify(out));
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
    process.exit(1);
  },
);
