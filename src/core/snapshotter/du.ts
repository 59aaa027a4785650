// The overlay snapshotter's disk usage walk is the one shared with the content store.
export { diskUsage } from '../disk-usage.js';
