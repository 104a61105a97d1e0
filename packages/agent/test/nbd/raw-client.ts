/**
 * A minimal NBD client over a raw socket, for protocol tests that must send exactly the bytes a
 * hostile or broken client would. It knows only what the tests need and checks nothing itself.
 */
import net from 'node:net';

export interface OptionReply {
  readonly option: number;
  readonly type: number;
  readonly data: Buffer;
}

export interface SimpleReply {
  readonly error: number;
  readonly handle: bigint;
  readonly data: Buffer;
}

export class RawClient {
  readonly socket: net.Socket;
  #buffer = Buffer.alloc(0);
  #isClosed = false;
  #wake: (() => void) | undefined;
  /** Resolves when the server closes the connection. */
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#wake?.();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.#isClosed = true;
        this.#wake?.();
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Bytes received and not yet read. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** Reads exactly n bytes; rejects if the server closes first or after timeoutMs. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.#buffer.length < n) {
      if (this.#isClosed) throw new Error(`connection closed with ${this.#buffer.length}/${n} bytes`);
      if (Date.now() > deadline) throw new Error(`timed out reading ${n} bytes`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 20);
      });
    }
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  write(data: Buffer): void {
    this.socket.write(data);
  }

  /** Reads the 18-byte greeting and answers with `clientFlags`; returns the handshake flags. */
  async handshake(clientFlags = 3): Promise<{ magic: Buffer; flags: number }> {
    const greeting = await this.read(18);
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(clientFlags >>> 0);
    this.write(flags);
    return { magic: greeting.subarray(0, 16), flags: greeting.readUInt16BE(16) };
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), magic = 0x49484156454f5054n): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(magic, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([header, data]));
  }

  async readOptionReply(): Promise<OptionReply> {
    const header = await this.read(20);
    if (header.readBigUInt64BE(0) !== 0x3e889045565a9n) throw new Error('bad option reply magic');
    const length = header.readUInt32BE(16);
    const data = length > 0 ? await this.read(length) : Buffer.alloc(0);
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data };
  }

  /** Sends NBD_OPT_GO (7) or NBD_OPT_INFO (6) and collects replies up to the final one. */
  async infoOrGo(option: 6 | 7, name: string, infos: number[] = []): Promise<OptionReply[]> {
    const nameBytes = Buffer.from(name);
    const data = Buffer.alloc(4 + nameBytes.length + 2 + 2 * infos.length);
    data.writeUInt32BE(nameBytes.length, 0);
    nameBytes.copy(data, 4);
    data.writeUInt16BE(infos.length, 4 + nameBytes.length);
    infos.forEach((info, i) => data.writeUInt16BE(info, 6 + nameBytes.length + 2 * i));
    this.sendOption(option, data);
    const replies: OptionReply[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      replies.push(reply);
      if (reply.type !== 3) return replies; // Anything but NBD_REP_INFO is final.
    }
  }

  /** Handshake + NBD_OPT_GO; throws unless the server accepted. Returns size and flags. */
  async open(name: string): Promise<{ sizeBytes: number; flags: number }> {
    await this.handshake();
    const replies = await this.infoOrGo(7, name, [3]);
    const final = replies[replies.length - 1];
    if (final.type !== 1) throw new Error(`NBD_OPT_GO failed with reply type 0x${final.type.toString(16)}`);
    const exportInfo = replies.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 0)!;
    return { sizeBytes: Number(exportInfo.data.readBigUInt64BE(2)), flags: exportInfo.data.readUInt16BE(10) };
  }

  /** Sends one transmission request (payload appended for writes). */
  request(type: number, handle: bigint, offset: bigint | number, length: number, flags = 0, payload?: Buffer): void {
    const header = Buffer.alloc(28);
    header.writeUInt32BE(0x25609513, 0);
    header.writeUInt16BE(flags, 4);
    header.writeUInt16BE(type, 6);
    header.writeBigUInt64BE(handle, 8);
    header.writeBigUInt64BE(BigInt(offset), 16);
    header.writeUInt32BE(length, 24);
    this.write(payload === undefined ? header : Buffer.concat([header, payload]));
  }

  /** Reads one simple reply; `readLengths` maps handles of READs to their lengths (data follows on success). */
  async readReply(readLengths: ReadonlyMap<bigint, number> = new Map(), timeoutMs = 5000): Promise<SimpleReply> {
    const header = await this.read(16, timeoutMs);
    if (header.readUInt32BE(0) !== 0x67446698) throw new Error('bad simple reply magic');
    const error = header.readUInt32BE(4);
    const handle = header.readBigUInt64BE(8);
    const length = readLengths.get(handle) ?? 0;
    const data = error === 0 && length > 0 ? await this.read(length, timeoutMs) : Buffer.alloc(0);
    return { error, handle, data };
  }

  destroy(): void {
    this.socket.destroy();
  }
}
