// Who the caller is, for pages that offer write buttons by role: App reads it once (whoami).
let current = "";

export function setPrincipal(principal: string): void {
  current = principal;
}

export function principal(): string {
  return current;
}
