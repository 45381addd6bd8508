// A tiny hash router: the console is one page served under /app/, so the route lives in the
// fragment (`#/campaigns/c1`) and a reload or a shared link lands on the same screen.

import { reactive } from 'vue';

export type Route =
  | { name: 'signin' }
  | { name: 'join'; token: string; campaignId?: string }
  | { name: 'campaigns' }
  | { name: 'campaign'; campaignId: string }
  | { name: 'table'; campaignId: string; sessionId: string };

function parse(hash: string): Route {
  const raw = hash.replace(/^#/, '') || '/';
  const [path, queryText = ''] = raw.split('?', 2);
  const query = new URLSearchParams(queryText);
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'join') {
    return { name: 'join', token: query.get('token') ?? '', campaignId: query.get('campaign') ?? query.get('campaignId') ?? undefined };
  }
  if (parts[0] === 'signin') return { name: 'signin' };
  if (parts[0] === 'campaigns' && parts[1] && parts[2] === 'sessions' && parts[3]) {
    return { name: 'table', campaignId: parts[1], sessionId: parts[3] };
  }
  if (parts[0] === 'campaigns' && parts[1]) return { name: 'campaign', campaignId: parts[1] };
  return { name: 'campaigns' };
}

export const router = reactive({ route: parse(location.hash) as Route });

window.addEventListener('hashchange', () => {
  router.route = parse(location.hash);
});

export function href(route: Route): string {
  const e = encodeURIComponent;
  switch (route.name) {
    case 'signin':
      return '#/signin';
    case 'join':
      return `#/join?token=${e(route.token)}`;
    case 'campaigns':
      return '#/campaigns';
    case 'campaign':
      return `#/campaigns/${e(route.campaignId)}`;
    case 'table':
      return `#/campaigns/${e(route.campaignId)}/sessions/${e(route.sessionId)}`;
  }
}

export function go(route: Route, replace = false): void {
  const target = href(route);
  if (replace) {
    history.replaceState(null, '', target);
    router.route = parse(target);
  } else if (location.hash === target) {
    router.route = parse(target);
  } else {
    location.hash = target;
  }
}
