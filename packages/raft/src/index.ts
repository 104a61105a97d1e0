export const packageName = '@rdl/raft';
