/** Entry of the page bundle (dist/site/app.js). */
import { startApp } from './app.js';

startApp();
