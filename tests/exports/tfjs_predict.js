// Run a TF.js layers model (model.json + shards) in Node with @tensorflow/tfjs and print
// its outputs as JSON. Usage: node tfjs_predict.js MODEL_DIR IMAGES.bin N SIDE
// IMAGES.bin: N x SIDE x SIDE x 3 float32 (raw RGB 0-255), little-endian.
const tf = require('@tensorflow/tfjs');
const fs = require('fs');
const path = require('path');

async function main() {
  const [dir, images, n, side] = process.argv.slice(2);
  const doc = JSON.parse(fs.readFileSync(path.join(dir, 'model.json')));
  const shards = doc.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(dir, p))));
  const all = Buffer.concat(shards);
  const model = await tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: doc.modelTopology,
    weightSpecs: doc.weightsManifest.flatMap((g) => g.weights),
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
  }));
  const raw = fs.readFileSync(images);
  const x = tf.tensor4d(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), [+n, +side, +side, 3]);
  const labels = (doc.userDefinedMetadata.zoo_transfer || {}).class_names;
  process.stdout.write(JSON.stringify({ outputs: await model.predict(x).array(), labels }) + '\n');
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
