/** Node kernel worker (worker_threads): serves jobs with the data it was started with. */
import { workerData } from 'node:worker_threads';
import { serveJobs, type WorkerData } from './worker-loop.js';

serveJobs(workerData as WorkerData);
