export const packageName = '@rdl/daemon';
