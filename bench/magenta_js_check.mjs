// magenta.js's MusicVAE on a job written by bench/magenta_js_check.py: load the model from its URL, encode the
// job's tensors (and NoteSequences, if any) to mu, and decode the job's z by argmax (no temperature).
// Usage: NODE_PATH=.../node_modules node bench/magenta_js_check.mjs job.json out.json
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH + "/");
const mvae = require("@magenta/music/node/music_vae");
const tf = require("@tensorflow/tfjs");

const [jobPath, outPath] = process.argv.slice(2);
const job = JSON.parse(fs.readFileSync(jobPath, "utf8"));
const model = new mvae.MusicVAE(job.url);
await model.initialize();

const zTensors = await model.encodeTensors(tf.tensor3d(job.tensors), {});
const out = { z_tensors: await zTensors.array() };
if (job.sequences) {
  out.z_sequences = await (await model.encode(job.sequences)).array();
}
out.decoded = await (await model.decodeTensors(tf.tensor2d(job.z))).array();
fs.writeFileSync(outPath, JSON.stringify(out));
model.dispose();
