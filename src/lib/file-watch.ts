import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';

const DEBOUNCE_MS = 250;

/**
 * Calls `onChange` once per burst of changes to any of a set of files. It
 * watches their directories rather than the files, because editors replace
 * files by rename and Kubernetes swaps mounted secrets through a "..data"
 * symlink; both defeat a watch on the file itself.
 */
export class FileWatchSet {
  private readonly onChange: () => void;
  private readonly logger: Logger;
  private readonly watchers = new Map<string, FSWatcher>();
  private names = new Map<string, Set<string>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(onChange: () => void, logger: Logger) {
    this.onChange = onChange;
    this.logger = logger;
  }

  /** Replaces the watched set (after a reload the set of secret files may differ). */
  watch(files: readonly string[]): void {
    const names = new Map<string, Set<string>>();
    for (const file of files) {
      const directory = dirname(file);
      const set = names.get(directory) ?? new Set<string>();
      set.add(basename(file));
      names.set(directory, set);
    }
    this.names = names;
    for (const [directory, watcher] of this.watchers) {
      if (!names.has(directory)) {
        watcher.close();
        this.watchers.delete(directory);
      }
    }
    for (const directory of names.keys()) {
      if (this.watchers.has(directory)) continue;
      try {
        const watcher = watch(directory, { persistent: false }, (_event, filename) => this.changed(directory, filename));
        watcher.on('error', (error) => this.logger.warn({ err: error, directory }, 'file watch failed; SIGHUP still reloads'));
        this.watchers.set(directory, watcher);
      } catch (error) {
        this.logger.warn({ err: error, directory }, 'cannot watch directory; SIGHUP still reloads');
      }
    }
  }

  close(): void {
    clearTimeout(this.timer);
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }

  private changed(directory: string, filename: string | null): void {
    const watched = this.names.get(directory);
    if (filename !== null && watched !== undefined && !watched.has(filename) && !filename.startsWith('..')) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(this.onChange, DEBOUNCE_MS);
    this.timer.unref();
  }
}
